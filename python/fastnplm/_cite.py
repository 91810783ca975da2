"""BibTeX of the papers fastnplm implements (the reference list of docs/method.md)."""

BIBTEX = r"""@article{DAgnolo2019,
  author        = {D'Agnolo, Raffaele Tito and Wulzer, Andrea},
  title         = {Learning New Physics from a Machine},
  journal       = {Phys. Rev. D},
  volume        = {99},
  pages         = {015014},
  year          = {2019},
  eprint        = {1806.02350},
  archivePrefix = {arXiv}
}

@article{DAgnolo2021,
  author        = {D'Agnolo, Raffaele Tito and Grosso, Gaia and Pierini, Maurizio and Wulzer, Andrea and Zanetti, Marco},
  title         = {Learning Multivariate New Physics},
  journal       = {Eur. Phys. J. C},
  volume        = {81},
  pages         = {89},
  year          = {2021},
  eprint        = {1912.12155},
  archivePrefix = {arXiv}
}

@article{DAgnolo2022,
  author        = {D'Agnolo, Raffaele Tito and others},
  title         = {Learning New Physics from an Imperfect Machine},
  journal       = {Eur. Phys. J. C},
  volume        = {82},
  pages         = {275},
  year          = {2022},
  eprint        = {2111.13633},
  archivePrefix = {arXiv}
}

@article{Letizia2022,
  author        = {Letizia, Marco and others},
  title         = {Learning new physics efficiently with nonparametric methods},
  journal       = {Eur. Phys. J. C},
  volume        = {82},
  pages         = {879},
  year          = {2022},
  eprint        = {2204.02317},
  archivePrefix = {arXiv}
}

@article{Grosso2023,
  author        = {Grosso, Gaia and others},
  title         = {Fast kernel methods for data quality monitoring as a goodness-of-fit test},
  journal       = {Mach. Learn. Sci. Tech.},
  year          = {2023},
  eprint        = {2303.05413},
  archivePrefix = {arXiv}
}

@misc{Grosso2024,
  author        = {Grosso, Gaia and Letizia, Marco and others},
  title         = {Multiple testing for signal-agnostic searches},
  year          = {2024},
  eprint        = {2408.12296},
  archivePrefix = {arXiv}
}

@inproceedings{Meanti2020,
  author        = {Meanti, Giacomo and Carratino, Luigi and Rosasco, Lorenzo and Rudi, Alessandro},
  title         = {Kernel methods through the roof: handle billions of points efficiently},
  booktitle     = {Advances in Neural Information Processing Systems (NeurIPS)},
  year          = {2020}
}

@article{Chen2021,
  author        = {Chen, Shankha and Glioti, Alfredo and Panico, Giuliano and Wulzer, Andrea},
  title         = {Parametrized classifiers for optimal {EFT} sensitivity},
  journal       = {JHEP},
  volume        = {05},
  pages         = {247},
  year          = {2021}
}
"""
