"""python -m workbook report | one | batch | compare | study | clean | lab | where | help"""
import sys

from workbook.planner import main

sys.exit(main())
