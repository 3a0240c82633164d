# SPDX-License-Identifier: MIT
# depth-adddata.gp - datapath_bench's DEPTH adddata lines (depth_adddata.dat, written by
# bench/report.py): AddData MiB/s against MiB in flight beside its same-run baseline (the
# slower of openssl dgst -sha256 and write + fdatasync). Run in bench/results/.
set terminal pngcairo size 900,600 noenhanced
set output "depth_adddata.png"
set title "PeerDistClientAddData throughput against bytes in flight"
set xlabel "MiB in flight"
set ylabel "MiB/s"
set logscale x 2
set grid
set key bottom right
plot "depth_adddata.dat" using 1:2 with linespoints lw 2 title "AddData", \
     "" using 1:3 with linespoints dt 2 title "baseline", \
     "" using 1:($3 * 0.8) with lines dt 3 title "target: 80 % of the baseline"
