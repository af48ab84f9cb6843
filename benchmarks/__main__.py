"""`python -m benchmarks`: see benchmarks/cli.py.

With --backend or --onednn, benchmarks/multi.py runs the harness once per
setting without importing Keras here; otherwise benchmarks/cli.py measures
this process' backend."""

import sys

from benchmarks import multi

if multi.requested(sys.argv[1:]):
    multi.main(sys.argv[1:])
else:
    from benchmarks.cli import main

    main()
