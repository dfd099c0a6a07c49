#!/usr/bin/env python3
"""Start the papo chat server: ``python server.py --help`` lists the options."""

import sys

from papo.app import main

if __name__ == "__main__":
    sys.exit(main())
