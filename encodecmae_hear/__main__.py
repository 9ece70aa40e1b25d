import sys

from encodecmae_hear.cli import main

sys.exit(main())
