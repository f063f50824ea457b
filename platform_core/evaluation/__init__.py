"""Clinical evaluation: calibration, operating points, subgroups and paired comparisons of model versions."""
