# SPDX-License-Identifier: MIT
# depth-flush.gp - rpc_bench's DEPTH flush lines (depth_flush.dat, written by bench/report.py):
# flushes/s against requests in flight, peerdist beside redis-benchmark's pipelined PING and
# the raw Unix-socket round trip. Run in bench/results/.
set terminal pngcairo size 900,600 noenhanced
set output "depth_flush.png"
set title "Flush throughput against depth"
set xlabel "requests in flight"
set ylabel "per second"
set logscale x 2
set grid
set key top left
plot "depth_flush.dat" using 1:2 with linespoints lw 2 title "peerdist FlushContent", \
     "" using 1:3 with linespoints title "redis-benchmark PING -P depth", \
     "" using 1:4 with linespoints dt 2 title "raw Unix-socket round trips"
