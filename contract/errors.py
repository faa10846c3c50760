"""What both halves refuse, in one place; each message names what is wrong and how to fix it.

ValueError
├── PlanError        a plan or one of its parts (a file, a secret reference, a template,
│                    the plan's JSON) is invalid: the webhook denies the pod, the init
│                    container exits with a configuration error
├── BadRequest       a body sent to the broker is no valid secrets request (400)
├── InvalidAnswer    a broker's 200 answer is not one valid item per requested secret
└── AnswerTooLarge   an answer would pass the answer bound; the message says how to split
"""

from __future__ import annotations


class PlanError(ValueError):
    """A plan or one of its parts is invalid; the message says what and how to fix it."""


class BadRequest(ValueError):
    """The body is not a valid secrets request; the message names the field and the fix."""


class InvalidAnswer(ValueError):
    """A 200 answer that is not one valid item per requested secret; the message says which."""


class AnswerTooLarge(ValueError):
    """The answer would pass `MAX_ANSWER_BYTES`; the message says how to split the request."""
