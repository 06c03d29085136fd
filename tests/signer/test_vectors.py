"""Every test vector of paradex-api.md §6.8 (and the §6.4 type/domain hashes) reproduced by
``services.paradex.signing``: hashes AND signatures (r, s), plus the fast paths of ``sign`` (fixed-base
``k*G``, one-shot RFC 6979) against the generic implementations they replace."""

from __future__ import annotations

import hashlib
import math

import pytest
from ecdsa.rfc6979 import generate_k
from hypothesis import given, settings
from hypothesis import strategies as st

from services.paradex import signing

TESTNET = "PRIVATE_SN_POTC_SEPOLIA"
PROD = "PRIVATE_SN_PARACLEAR_MAINNET"
GOERLI = "PRIVATE_SN_POTC_GOERLI"

SDK_L1_KEY = "0xf8e4d1d772cdd44e5e77615ad11cc071c94e4c06dc21150d903f28e6aa6abdff"
SDK_L1_ADDRESS = "0xd2c7314539dCe7752c8120af4eC2AA750Cf2035e"
SDK_L2_KEY = 0x543B6CF6C91817A87174AAEA4FB370AC1C694E864D7740D728F8344D53E815
SDK_L2_PUB = 0x2C144D2F2D4FC61B6F8967F3BA0012A87D90140BCFE5A3E92E8DF83258C960F
SDK_ACCOUNT = 0x129C135ED63DF9353885E292BE4426B8ED6122B13C6C0E1BB787288A1F5ADFA
PROXY_HASH = 0x3530CC4759D78042F1B543BF797F5F3D647CDE0388C33734CF91B7F7B9314A9
ACCOUNT_HASH = 0x41CB0280EBADAA75F996D8D92C6F265F6D040BB3BA442E5F86A554F1765244E

ORDER_LIMIT = signing.OrderFields("ETH-USD-PERP", "BUY", "LIMIT", "0.1", "1500", 1634736000000)
ORDER_MARKET = signing.OrderFields("BTC-USD-PERP", "SELL", "MARKET", "0.001", "0", 1700000000000)
MODIFY = signing.OrderFields("ETH-USD-PERP", "BUY", "LIMIT", "0.2", "1600", 1700000001000)
MODIFY_ID = "1681462103821101699438490000"

# §6.8 D: (message, chain) -> (hash, r, s)
TABLE_D = {
    ("order_limit", TESTNET): (
        0x357F784E57D5C5B56410BFD988055F93958794F4E550742849E6C82B943C92D,
        2961186408715658376560799415933082549278902945930875798115822875536782398140,
        1040053515422438623039287654725991540040847871773109144124854491635355637263,
    ),
    ("order_market", TESTNET): (
        0x38BA0DA77D4B0220AF88A5404A4E5DAA9DAEFCAB0E397F0CFB87EBAD182BB4F,
        3117009411138121464178537103509408556170122248880144047512993527516416791846,
        1678811099662595442332625332911532704104285950475342911670047407526838710676,
    ),
    ("modify", TESTNET): (
        0x63D19915B5FDD63E74B6EE594B17BA84C0F42D75F314C8E6F793BA5956D0C32,
        3012068622457248472136181813577593657191837986762734533370023459354787978797,
        3035426858446665149890949939477166164290507999798238860384104888061328311093,
    ),
    ("auth", TESTNET): (
        0x483C5A1B923D0E130EA8EAD403E029AF1786EF0210BA6D429032A6BAD5DF53E,
        2132284500520413871919396842573789033969507026344597688131979256814980629443,
        60967047678036961727488225327132907015713233813795769527958274554976629987,
    ),
    ("onboarding", TESTNET): (
        0xD38FCA3E24662DEA69B9BC6699DBAF95D018C8FB7C9940F51AABB813E8D8BF,
        1921385330322077821027587838277236767537286699219900147326335214350127528518,
        2616977197467235637779630695674544183962440344249194051085029881655264180190,
    ),
    ("order_limit", PROD): (
        0x5E781827F02A3C83A1A3105F1FB1134C1AD631437A210D6080FF98F4A50FC78,
        656170405249719938239525626695188517876737011936089524787575833395048372269,
        1188493602906434980847083393565057077236828121052179931595179353748656429239,
    ),
    ("order_market", PROD): (
        0x37FB957CD119FA3AD5777B08B86704B30EEBF4584632BC84E875E59CE22D9BB,
        2850687825455312745684244615329991472703107579175103702615149971260283021316,
        2874808075836178147130120956553316455256160619156905871876514336396974724481,
    ),
    ("modify", PROD): (
        0x19B4AA61D6392671BF39CECFFEDA7F66B662385242C5EDEC3F88367E4D4C177,
        2289411615268590666122740171850133213708354640695967331796685001180454324297,
        2378029257634817974174781406649995086656532304411121285246438410938738299912,
    ),
    ("auth", PROD): (
        0xB8D8E018A275691AC6064EA78BB2F2175E70CBF2B92B69CCAB7BAFA35F7BEA,
        2675602039795500597127725905523973457793053717524408663259399950060036878012,
        3387264619054584275536630181441085074044291150880822692793928851206077063331,
    ),
    ("onboarding", PROD): (
        0x6A15DE87D2DCA35B61C59974C450DCDA40C633B8D9589C8FF50E3304CE2CD45,
        3306247994895712322134191141715332832030646047812253098801642582036642857657,
        508306757881114179025530941191201001450143528652472931241399050026904851852,
    ),
}


def _hash(kind: str, chain: str) -> int:
    if kind == "order_limit":
        return signing.order_hash(chain, SDK_ACCOUNT, ORDER_LIMIT)
    if kind == "order_market":
        return signing.order_hash(chain, SDK_ACCOUNT, ORDER_MARKET)
    if kind == "modify":
        return signing.modify_hash(chain, SDK_ACCOUNT, MODIFY, MODIFY_ID)
    if kind == "auth":
        return signing.auth_hash(chain, SDK_ACCOUNT, 1706868900, 1706955300)
    return signing.onboarding_hash(chain, SDK_ACCOUNT)


@pytest.mark.parametrize(("kind", "chain"), sorted(TABLE_D))
def test_table_d_hash_and_signature(kind: str, chain: str) -> None:
    want_hash, want_r, want_s = TABLE_D[(kind, chain)]
    h = _hash(kind, chain)
    assert h == want_hash
    assert signing.sign(h, SDK_L2_KEY) == (want_r, want_s)
    assert signing.verify(h, want_r, want_s, SDK_L2_PUB)
    assert signing.format_signature(want_r, want_s) == f'["{want_r}","{want_s}"]'


def test_order_struct_hash_chain_independent() -> None:
    assert signing.order_struct_hash(ORDER_LIMIT) == 0x37EAB8D0B16FED3DC75A5AD427F14A7DC044DC259269D39887347AED1ECF99C


def test_table_a_cpp_vectors() -> None:
    assert signing.DOMAIN_TYPE_HASH == 0x98D1932052FC5137543DE5ED85B7A88555A4CD1FF5D5BFEDB62ED9B9A1F0DB
    assert signing.chain_id_felt(GOERLI) == 0x505249564154455F534E5F504F54435F474F45524C49
    assert signing.short_string("Paradex") == 0x50617261646578
    assert signing.domain_hash(GOERLI) == 0x6A9F6F5D2B1C9AD4528A1EB8F357FC7E51F5C01AD09120D46075023164BD1C4
    assert signing.domain_hash(GOERLI) == 3014178702424108121777716632486845591462527404146882043469255095154522182084
    cpp_order = signing.OrderFields("ETH-USD-PERP", "BUY", "MARKET", "0.1", "0", 1690186431033)
    assert signing.order_struct_hash(cpp_order) == 0x067A4BEEEFF01460F2FAB511A313B2971514B0E433981CDCA8AD146F7CB7191E
    assert signing.auth_struct_hash(1690186758, 1690273158) == (
        0x0069CB5C6EA69984C70005D0A56C2198C693AADE9E7611686D517E6E71ECAAD3
    )
    full = signing.OrderFields("ETH-USD-PERP", "BUY", "MARKET", "0.1", "0", 1690187319619)
    account = 0x1F06D2232E3EB0D8BD4B9294A930D553F610A0D7B24BC52D9472C7BDA478927
    assert (
        signing.order_hash(GOERLI, account, full) == 0x02FF954A62A6191411AA051588C65A4AC37690CE781BB345BB886AC947630E5B
    )
    assert signing.public_key(0x3C1E9550E66958296D11B60F8E8E7A7AD990D07FA65D5F7652C4A6C87D4E3CC) == (
        0x77A3B314DB07C45076D11F62B6F9E748A39790441823307743CF00D6597EA43
    )


def test_table_b_starknet_crypto_py_vectors() -> None:
    assert signing.public_key(2708384690123958484688745363115889726043588718997906908187752842753359350371) == (
        1673729114437878727516854592246827335452530539480870878860719335128967723895
    )
    assert signing.pedersen(0, 0) == 2089986280348253421170679821480865132823066470938446095505822317253594081284
    assert signing.pedersen(1, 1) == 1321142004022994845681377299801403567378503530250467610343381590909832171180
    assert signing.pedersen(1, 2) == 0x5BB9440E27889A364BCB678B1F679ECD1347ACDEDCBF36E83494F857CC58026


def test_table_c_sdk_account() -> None:
    assert signing.l2_key_from_eth_key(SDK_L1_KEY, 11155111) == SDK_L2_KEY
    assert signing.public_key(SDK_L2_KEY) == SDK_L2_PUB
    assert signing.account_address(SDK_L2_PUB, ACCOUNT_HASH, PROXY_HASH) == SDK_ACCOUNT


def test_section_6_4_type_and_domain_hashes() -> None:
    assert signing.ORDER_TYPE_HASH == 0xA56D5225B97B257C15AE2CB1CC0EA605381A886CD75463DB45FD2EF9FBC255
    assert signing.MODIFY_TYPE_HASH == 0x201789BB587C17B251FD38DAF43B14807010EA721C2929A8C2FC33BF15C2E2C
    assert signing.REQUEST_TYPE_HASH == 0x186CDEF6B179923C411C13C11B8A825F12BF34203BDDA0A984DA9D6F2313C2
    assert signing.CONSTANT_TYPE_HASH == 0xE84BBCB68E0F7C73A9058BA82B6DA9C1FFDC502EFCF034E78B0C003C22ECC9
    assert signing.domain_hash(PROD) == 0x6F74F207280B65CF663FB8D7763FAC1E7398CD6D7DA5D7681DC300EE4278A0A
    assert signing.domain_hash(TESTNET) == 0x38B9242CB46EB19FF458C80A8F0EDA7E8E26D8D6D54A63D9B5ED89750E39EF2
    assert signing.domain_hash("PRIVATE_SN_POTC_MOCK_SEPOLIA") == (
        0x4F1AC9814D801602A9CCB28F669BC4A37D4D91220411FA09E75F005010FCC4F
    )
    assert signing.STARKNET_MESSAGE == 110930206544689809660069706067448260453


# --- the fast paths inside sign() equal the generic code they replace ------------------------------

scalars = st.integers(min_value=1, max_value=signing.EC_ORDER - 1)


@settings(max_examples=60, deadline=None)
@given(k=scalars)
def test_fixed_base_multiplication_matches_native(k: int) -> None:
    assert signing._mul_generator_x(k) == signing.public_key(k)


@pytest.mark.parametrize("k", [1, 2, 2047, 2048, 2**11 + 1, 2**242, 2**251, signing.EC_ORDER - 1, signing.EC_ORDER - 2])
def test_fixed_base_multiplication_edges(k: int) -> None:
    assert signing._mul_generator_x(k) == signing.public_key(k)


def _generic_k(msg_hash: int, key: int, seed: int | None) -> int:
    if 1 <= msg_hash.bit_length() % 8 <= 4 and msg_hash.bit_length() >= 248:
        msg_hash *= 16
    extra = b"" if seed is None else seed.to_bytes(math.ceil(seed.bit_length() / 8), "big")
    data = msg_hash.to_bytes(math.ceil(msg_hash.bit_length() / 8), "big")
    return generate_k(signing.EC_ORDER, key, hashlib.sha256, data, extra_entropy=extra)


@settings(max_examples=200, deadline=None)
@given(
    msg_hash=st.one_of(st.integers(1, 2**251 - 1), st.integers(1, 2**64), st.integers(2**247, 2**251 - 1)),
    key=scalars,
    seed=st.one_of(st.none(), st.integers(0, 2**16)),
)
def test_rfc6979_fast_path_matches_ecdsa_package(msg_hash: int, key: int, seed: int | None) -> None:
    assert signing._rfc6979_k(msg_hash, key, seed) == _generic_k(msg_hash, key, seed)


def test_sign_rejects_out_of_range_inputs() -> None:
    with pytest.raises(ValueError):
        signing.sign(2**251, SDK_L2_KEY)
    with pytest.raises(ValueError):
        signing.sign(1, 0)
    with pytest.raises(ValueError):
        signing.sign(1, signing.EC_ORDER)
