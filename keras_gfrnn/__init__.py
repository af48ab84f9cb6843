"""keras_gfrnn: research recurrent layers as first-class Keras layers.

- `GatedFeedbackRNN` / `GatedFeedbackCell`: Gated Feedback RNN
  (Chung, Gulcehre, Cho, Bengio, ICML 2015).
"""

from keras_gfrnn.gated_feedback_rnn import GatedFeedbackCell
from keras_gfrnn.gated_feedback_rnn import GatedFeedbackRNN

__version__ = "0.1.0"

__all__ = [
    "GatedFeedbackCell",
    "GatedFeedbackRNN",
    "__version__",
]
