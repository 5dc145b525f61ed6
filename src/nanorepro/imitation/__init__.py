"""Imitation learning: tabular mechanism (``tabular``, ``cliff``) and continuous control (``learners``).

    from nanorepro.imitation import DualQDM, ImitationConfig, Budget, load_demos
    fit = DualQDM(ImitationConfig()).fit("Hopper-v5", load_demos("Hopper-v5.npz"), Budget(env_steps=100_000))
"""

from nanorepro.imitation.demos import Demos, bundled_demos_path, load_demos, save_demos
from nanorepro.imitation.learners import BC, GAIL, Budget, DualQDM, Fit, ImitationConfig, IQLearn, make_learner

__all__ = ["BC", "GAIL", "IQLearn", "DualQDM", "ImitationConfig", "Budget", "Fit", "make_learner",
           "Demos", "load_demos", "save_demos", "bundled_demos_path"]
