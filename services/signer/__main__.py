"""``python -m services.signer``: run the signer process."""

from services.signer.service import main

if __name__ == "__main__":
    main()
