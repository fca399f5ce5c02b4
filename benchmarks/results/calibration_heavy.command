python benchmarks/calibration.py --fpr-only --n 60 --K 16 64 --reps 30 --reps-heavy 30 --n-permutations 200 --out benchmarks/results/calibration_heavy.tsv  # AMD EPYC, 2 CPUs, 1610 s
