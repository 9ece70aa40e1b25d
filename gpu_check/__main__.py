"""python -m gpu_check [--out DIR] [--data SHARDS] [--budget 510] [--stages a,b] [--cpu-smoke]"""
import sys

from gpu_check.check import main

sys.exit(main())
