import sys

from keras_tips.cli.main import main

sys.exit(main())
