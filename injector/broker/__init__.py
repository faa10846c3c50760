"""The broker: init containers trade a bound ServiceAccount token for secret values.

The path of a secret: `tokens` (TokenReview) -> `access` (SubjectAccessReview) -> `cache`
(one shared, rate-limited Sakura client) -> `service` (the answer, or a refusal of a kind in
`errors`). `admission_check` runs the same RBAC and an existence check at admission; `can_i`
and `who_can` (on `readers`) answer the CLI; `tuning` holds every knob. The HTTP shell
(`injector.serving.broker_routes`) serves it and alone knows statuses;
`injector.operations.wiring` builds it all.
"""
