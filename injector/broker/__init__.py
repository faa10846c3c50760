"""The broker: init containers trade a bound ServiceAccount token for secret values.

The path of a secret: `tokens` (TokenReview) -> `access` (SubjectAccessReview) -> `cache`
(one shared, rate-limited Sakura client) -> `routes` (the answer). `admission_check` runs the
same RBAC and an existence check at admission; `can_i` answers the CLI; `wiring` builds it all.
"""
