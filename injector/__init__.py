"""The injector: a mutating admission webhook and the broker the init containers call.

The path of a pod: `annotations` (parse into a Plan) -> `pod/` builders -> `mutation`
(new pod) -> `admission` (JSON patch). Importing this package imports nothing heavy.
"""
