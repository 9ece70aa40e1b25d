"""The GPU check: the GPU figures of this project in one prepared run of under 10 minutes
(`make gpu-check`, or `python -m gpu_check` from the checkout; docs/TRAINING.md).

check.py runs the four stages, each under its own time budget; stages.py measures
embedding and training speed in child processes; runs.py holds the two short training
runs; summary.py writes summary.md. Not part of the wheel: it drives the installed package
through its own commands. tests/test_gpu_check.py runs it at CPU size.
"""
