# MIHash (Cakir, He, Bargal, Sclaroff; ICCV 2017 / TPAMI 2019): minus the mutual information of
# neighbour labels and relaxed Hamming distances, each batch item a query against the others.
# Defaults (fcakir/deep-mihash): K/2 histogram bins, codes 2*sigmoid(z) - 1, summed over queries.
method = dict(type="mihash")
