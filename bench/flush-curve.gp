# SPDX-License-Identifier: MIT
# flush-curve.gp - flush_bench's CURVE lines (flush_curve.dat, written by bench/report.py) as
# flush time against tag size, log-log, beside the plain DELETE baseline and the real 1 GiB
# flush end to end (flush_real.dat, datapath_bench's flush_s). Run in bench/results/.
set terminal pngcairo size 900,600 noenhanced
set output "flush_curve.png"
set title "Flush time against tag size (database alone; one real point end to end)"
set xlabel "tag size, MiB of labels (64 KiB blocks)"
set ylabel "ms"
set logscale xy
set xrange [0.7:16384]
set grid
set key top left
plot "flush_curve.dat" using 1:3:4:5 with yerrorlines lw 2 title "store_flush_tag (median, min-max)", \
     "" using 1:6 with linespoints title "baseline: plain DELETE", \
     "" using 1:7 with lines dt 2 title "linear: the largest point's ms per MiB", \
     "flush_real.dat" using 1:2 with points pt 7 ps 2 title "real flush end to end (datapath_bench)"
