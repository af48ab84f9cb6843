"""keras_gfrnn: research recurrent layers as first-class Keras layers.

- `GatedFeedbackRNN` / `GatedFeedbackCell`: Gated Feedback RNN
  (Chung, Gulcehre, Cho, Bengio, ICML 2015).
- `ClockworkRNN` / `ClockworkCell`: Clockwork RNN (Koutnik, Greff, Gomez,
  Schmidhuber, ICML 2014).
- `ReNet2D`: ReNet (Visin, Kastner, Cho, Matteucci, Courville, Bengio,
  2015).
"""

from keras_gfrnn.clockwork_rnn import ClockworkCell
from keras_gfrnn.clockwork_rnn import ClockworkRNN
from keras_gfrnn.gated_feedback_rnn import GatedFeedbackCell
from keras_gfrnn.gated_feedback_rnn import GatedFeedbackRNN
from keras_gfrnn.renet2d import ReNet2D

# PEP 440: the development version of 0.2.0 (unreleased; CHANGELOG.md). The
# default `gate_inputs` changed from 0.1.0's "own_layer" to "all_layers".
__version__ = "0.2.0.dev0"

__all__ = [
    "ClockworkCell",
    "ClockworkRNN",
    "GatedFeedbackCell",
    "GatedFeedbackRNN",
    "ReNet2D",
    "__version__",
]
