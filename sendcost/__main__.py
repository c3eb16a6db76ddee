import sys

from sendcost.cli import main

sys.exit(main())
