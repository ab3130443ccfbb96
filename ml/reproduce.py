"""`python -m ml.reproduce --version N`: rebuild a registered model and check it byte for byte.

The command's home; the work is in `ml.registry.reproduce`, beside the registry it reads.
"""

from ml.registry.reproduce import main

if __name__ == "__main__":
    raise SystemExit(main())
