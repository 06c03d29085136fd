"""paradex-api.md §6.8 vectors verify in the simulator, and badly signed requests are rejected with
the venue's error codes."""

from __future__ import annotations

import json
import time

from services.paradex import signing
from services.paradex_sim.testclient import SDK_TEST_ADDRESS, SimTrader

TESTNET = "PRIVATE_SN_POTC_SEPOLIA"
MAINNET = "PRIVATE_SN_PARACLEAR_MAINNET"
L1 = "0xd2c7314539dCe7752c8120af4eC2AA750Cf2035e"

# §6.8 D (r, s) for the SDK account, per chain
VECTORS = {
    TESTNET: {
        "onboarding": ("1921385330322077821027587838277236767537286699219900147326335214350127528518",
                       "2616977197467235637779630695674544183962440344249194051085029881655264180190"),
        "auth": ("2132284500520413871919396842573789033969507026344597688131979256814980629443",
                 "60967047678036961727488225327132907015713233813795769527958274554976629987"),
        "order_limit": ("2961186408715658376560799415933082549278902945930875798115822875536782398140",
                        "1040053515422438623039287654725991540040847871773109144124854491635355637263"),
        "order_market": ("3117009411138121464178537103509408556170122248880144047512993527516416791846",
                         "1678811099662595442332625332911532704104285950475342911670047407526838710676"),
    },
    MAINNET: {
        "onboarding": ("3306247994895712322134191141715332832030646047812253098801642582036642857657",
                       "508306757881114179025530941191201001450143528652472931241399050026904851852"),
        "auth": ("2675602039795500597127725905523973457793053717524408663259399950060036878012",
                 "3387264619054584275536630181441085074044291150880822692793928851206077063331"),
        "order_limit": ("656170405249719938239525626695188517876737011936089524787575833395048372269",
                        "1188493602906434980847083393565057077236828121052179931595179353748656429239"),
        "order_market": ("2850687825455312745684244615329991472703107579175103702615149971260283021316",
                         "2874808075836178147130120956553316455256160619156905871876514336396974724481"),
    },
}
PUBKEY = "0x2c144d2f2d4fc61b6f8967f3ba0012a87d90140bcfe5a3e92e8df83258c960f"


def sig(pair: tuple[str, str]) -> str:
    return json.dumps(list(pair))


async def _vectors_verify(sim, admin, chain: str) -> None:
    v = VECTORS[chain]
    trader = SimTrader(sim.rest_url, chain_id=chain)
    try:
        assert trader.address == SDK_TEST_ADDRESS
        r = await trader.request("POST", "/onboarding", json={"public_key": PUBKEY}, auth=False, headers={
            "PARADEX-ETHEREUM-ACCOUNT": L1, "PARADEX-STARKNET-ACCOUNT": SDK_TEST_ADDRESS,
            "PARADEX-STARKNET-SIGNATURE": sig(v["onboarding"])})
        assert r.status == 200, r
        # The auth vector was signed for 2024-02-02: put the simulator clock there.
        await admin.set_clock_offset(1706868960 * 1000 - int(time.time() * 1000))
        r = await trader.request("POST", f"/auth/{PUBKEY}", auth=False, headers={
            "PARADEX-STARKNET-ACCOUNT": SDK_TEST_ADDRESS, "PARADEX-STARKNET-SIGNATURE": sig(v["auth"]),
            "PARADEX-TIMESTAMP": "1706868900", "PARADEX-SIGNATURE-EXPIRATION": "1706955300"})
        assert r.status == 200 and r.body["jwt_token"], r
        trader.jwt = r.body["jwt_token"]
        # The order vectors were signed at 2021-10-20 and 2023-11-14: move the clock to each in turn.
        await admin.set_clock_offset(1634736000000 + 1000 - int(time.time() * 1000))
        body = {"market": "ETH-USD-PERP", "side": "BUY", "size": "0.1", "type": "LIMIT", "client_id": "",
                "instruction": "GTC", "signature": sig(v["order_limit"]), "signature_timestamp": 1634736000000,
                "recv_window": None, "stp": None, "price": "1500"}
        r = await trader.request("POST", "/orders", json=body)
        assert r.status == 201 and r.body["status"] == "NEW", r
        await admin.set_price("BTC-USD-PERP", index="65000")
        await admin.set_clock_offset(1700000000000 + 1000 - int(time.time() * 1000))
        body = {"market": "BTC-USD-PERP", "side": "SELL", "size": "0.001", "type": "MARKET", "client_id": "",
                "instruction": "GTC", "signature": sig(v["order_market"]), "signature_timestamp": 1700000000000,
                "recv_window": None, "stp": None}
        r = await trader.request("POST", "/orders", json=body)
        assert r.status == 201, r
        # The ModifyOrder vector's hash, computed the simulator's way, equals the reference.
        fields = signing.OrderFields("ETH-USD-PERP", "BUY", "LIMIT", "0.2", "1600", 1700000001000)
        h = signing.modify_hash(chain, int(SDK_TEST_ADDRESS, 16), fields, "1681462103821101699438490000")
        expected = {TESTNET: 0x63D19915B5FDD63E74B6EE594B17BA84C0F42D75F314C8E6F793BA5956D0C32,
                    MAINNET: 0x19B4AA61D6392671BF39CECFFEDA7F66B662385242C5EDEC3F88367E4D4C177}[chain]
        assert h == expected
    finally:
        await trader.close()


async def test_testnet_vectors_verify(sim, sim_admin):
    await _vectors_verify(sim, sim_admin, TESTNET)


async def test_mainnet_vectors_verify(sim_factory):
    from services.paradex_sim.admin_client import AdminClient

    sim = await sim_factory(starknet_chain_id=MAINNET)
    async with AdminClient(sim.admin_url) as admin:
        assert (await admin.config())["config"]["starknet_chain_id"] == MAINNET
        await _vectors_verify(sim, admin, MAINNET)


async def test_vector_with_wrong_chain_is_rejected(sim):
    """The testnet onboarding vector does not verify on a mainnet-configured chain and vice versa."""
    trader = SimTrader(sim.rest_url)
    try:
        r = await trader.request("POST", "/onboarding", json={"public_key": PUBKEY}, auth=False, headers={
            "PARADEX-ETHEREUM-ACCOUNT": L1, "PARADEX-STARKNET-ACCOUNT": SDK_TEST_ADDRESS,
            "PARADEX-STARKNET-SIGNATURE": sig(VECTORS[MAINNET]["onboarding"])})
        assert r.status == 400 and r.body["error"] == "STARKNET_SIGNATURE_VERIFICATION_FAILED"
    finally:
        await trader.close()


async def test_bad_order_signatures_rejected(sim, sim_trader):
    t = sim_trader
    other_key = 0x1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF1234567890ABCD
    cases = {
        "wrong key": t.order_body("ETH-USD-PERP", "BUY", "0.1", "3000", sign_as={"private_key": other_key}),
        "wrong chain": t.order_body("ETH-USD-PERP", "BUY", "0.1", "3000", sign_as={"chain_id": MAINNET}),
        "altered size": t.order_body("ETH-USD-PERP", "BUY", "0.2", "3000", sign_as={"size": "0.1"}),
        "altered price": t.order_body("ETH-USD-PERP", "BUY", "0.1", "3001", sign_as={"price": "3000"}),
        "altered side": t.order_body("ETH-USD-PERP", "SELL", "0.1", "3000", sign_as={"side": "BUY"}),
        "garbage signature": {**t.order_body("ETH-USD-PERP", "BUY", "0.1", "3000"), "signature": "not json"},
    }
    for name, body in cases.items():
        r = await t.request("POST", "/orders", json=body)
        assert (r.status, r.body["error"]) == (400, "INVALID_ORDER_SIGNATURE"), (name, r)
    # expired signature_timestamp: older than the default recv_window (300 s)
    old = int(time.time() * 1000) - 301_000
    r = await t.place("ETH-USD-PERP", "BUY", "0.1", "3000", timestamp_ms=old)
    assert (r.status, r.body["error"]) == (400, "INVALID_TIMESTAMP"), r
    # ... and an explicit, tight recv_window
    five_s_ago = int(time.time() * 1000) - 5_000
    r = await t.place("ETH-USD-PERP", "BUY", "0.1", "3000", timestamp_ms=five_s_ago, recv_window=1000)
    assert (r.status, r.body["error"]) == (400, "INVALID_TIMESTAMP"), r
    # a good one still works, and nothing above reached the book
    r = await t.place("ETH-USD-PERP", "BUY", "0.1", "3000")
    assert r.status == 201, r
    orders = (await t.get("/orders")).body["results"]
    assert [o["id"] for o in orders] == [r.body["id"]]


async def test_auth_rejections(sim, sim_trader, sim_admin):
    t = sim_trader
    now = int(time.time())
    h = t.auth_headers(now, now + 60)
    h["PARADEX-TIMESTAMP"] = str(now + 1)  # signed a different timestamp
    r = await t.request("POST", "/auth", headers=h, auth=False)
    assert (r.status, r.body["error"]) == (401, "STARKNET_SIGNATURE_VERIFICATION_FAILED")
    r = await t.request("POST", "/auth", headers=t.auth_headers(now - 100, now - 10), auth=False)
    assert (r.status, r.body["error"]) == (400, "INVALID_TIMESTAMP")
    r = await t.request("POST", "/auth/0x1234", headers=t.auth_headers(), auth=False)
    assert (r.status, r.body["error"]) == (400, "PUBLIC_KEY_INVALID")
    # both path forms work
    assert (await t.auth(use_path_key=False)).status == 200
    assert (await t.auth(use_path_key=True)).status == 200
    # JWT: 300 s lifetime with exp/iat/sub; expired -> 401 with prod's message-only body
    import jwt as pyjwt

    claims = pyjwt.decode(t.jwt, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 300 and claims["sub"] == t.address
    assert (await t.get("/account")).status == 200
    await sim_admin.advance_clock(301_000)
    r = await t.get("/account")
    assert r.status == 401 and set(r.body) == {"message"} and "token is expired by" in r.body["message"]
    t.jwt = "not-a-jwt"
    r = await t.get("/account")
    assert r.status == 401 and r.body == {"message": "missing or malformed jwt"}
