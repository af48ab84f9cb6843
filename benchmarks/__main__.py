"""`python -m benchmarks`: see benchmarks/run.py.

With --backend or --onednn, benchmarks/multi.py runs the harness once per
setting without importing Keras here; otherwise benchmarks/run.py measures
this process' backend."""

import sys

from benchmarks import multi

if multi.requested(sys.argv[1:]):
    multi.main(sys.argv[1:])
else:
    from benchmarks.run import main

    main()
