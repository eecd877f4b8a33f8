import sys

from kerasvae.cli import main

sys.exit(main())
