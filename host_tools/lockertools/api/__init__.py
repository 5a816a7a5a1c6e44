"""The HTTP API for the town's own systems, and its webhooks (docs/api.md).

- app: `create_api_app(...)`, the aiohttp sub-application (the staff desk mounts it at /api/v1/;
  `lockerctl api serve` runs it alone);
- openapi: the OpenAPI 3.1 document it serves;
- tokens: API tokens per integration (stored hashed, scoped), created and revoked by an admin;
- webhooks: the URLs an admin registers, the signed requests, the service's sender task, failures;
- outbox: the events of a delivery's state changes, queued in the change's own transaction;
- lockers: door sizes, and the free doors per size.
"""
