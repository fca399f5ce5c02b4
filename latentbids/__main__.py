"""Allow ``python -m latentbids``."""
from latentbids.cli.run import main

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
