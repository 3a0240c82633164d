# SPDX-License-Identifier: MIT
# throughput.gp - every MiB/s figure of the report (throughput.dat, written by bench/report.py)
# beside its same-run baseline, as pairs of bars: reads, hashing, publish, AddData, inject.
# Run in bench/results/.
set terminal pngcairo size 1100,600 noenhanced
set output "throughput.png"
set title "Throughput beside the same run's baseline"
set ylabel "MiB/s (log scale)"
set logscale y
set bmargin 9
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics rotate by -30
set grid ytics
set key top right
plot "throughput.dat" using 2:xtic(1) title "peerdist", "" using 3 title "baseline"
