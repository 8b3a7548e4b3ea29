# DSRH ablation: no bypass connection, the hash layer reads the final feature only.
# A variant registered in methods/dsrh.py; its config only names it.
method = dict(type="dsrh_nobypass")
