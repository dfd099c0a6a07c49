#!/usr/bin/env python3
"""The papo terminal client: ``python client.py --help`` lists the options."""

import sys

from papo.tui import main

if __name__ == "__main__":
    sys.exit(main())
