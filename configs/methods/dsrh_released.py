# DSRH on the released code's triplets: partners drawn from the whole training set per anchor.
# A variant registered in methods/dsrh.py; its config only names it.
method = dict(type="dsrh_released")
