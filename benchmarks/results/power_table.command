python benchmarks/power_table.py --reps 30 --sam-reps 10 --sam-max-n 200 --out benchmarks/results/power_table.tsv  # 1215 s, AMD EPYC, 2 CPUs
