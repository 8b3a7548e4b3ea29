# DPN (Fan, Ng, Ju, Zhang, Chan, IJCAI 2020). Defaults in methods/dpn.py (authors' released code): hinge
# margin m = 1 summed over bits, random ±1 target code per class, multi-label items polarised towards
# every label's code, no regulariser (reg = 0), linear (identity) outputs, no bypass.
method = dict(type="dpn")
