"""Shading: how a surface point's color is made. NeuS's color MLP (``neus_color``), NeRO's Stage I reflective
shading (``nero``, ``nero_light``), material heads and their registry ``HEADS`` (``heads``) mixed by an
assignment field (``segmented``), split-sum GGX (``split_sum``), BRDFs and Monte-Carlo lighting for Stage II
(``brdf``, ``lighting``, ``envmap``, ``monte_carlo``)."""
