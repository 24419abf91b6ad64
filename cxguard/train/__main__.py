import sys

from cxguard.train.cli import main

sys.exit(main())
