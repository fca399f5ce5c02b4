python benchmarks/calibration_e2e.py --null-runs 25 --first-run 35 --epochs 10 --out benchmarks/results/e2e_null2.tsv  # AMD EPYC, 2 CPUs; stopped after 15 of 25 runs (the session's time), 4801 s
