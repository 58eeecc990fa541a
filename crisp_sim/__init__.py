"""The integration of both packages: prune with `crisp`, then simulate with `accel_sim`.

``crisp`` never imports ``accel_sim`` (``accel_sim`` reads ``crisp``'s compressed files, so the
import graph runs ``crisp <- accel_sim <- crisp_sim``); jobs that need both live here.
"""
