python benchmarks/calibration_e2e.py --null-runs 60 --epochs 10 --out benchmarks/results/e2e_null.tsv  # AMD EPYC, 2 CPUs; stopped after 35 of 60 runs (the session ended), 5606 s
