import sys

from extract.load import main

sys.exit(main())
