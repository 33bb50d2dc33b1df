"""`python -m servers ...` - see servers._cli (guarded: spawn re-imports this module as __mp_main__)."""

import sys

if __name__ == "__main__":
    from servers._cli import main

    sys.exit(main())
