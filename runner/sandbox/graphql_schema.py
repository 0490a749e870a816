"""The gateway's mutation schema: the project's own SDL, or the real file from ``spec_dir``.

The project's SDL describes the same types, fields and nullability as the published excerpt of
the gateway schema (a test compares the two), so the sandbox rejects exactly the documents the
real gateway would, without shipping that file.
"""

from __future__ import annotations

from pathlib import Path

from graphql import GraphQLError, GraphQLSchema, build_schema

from runner.errors import ConfigError

SPEC_FILE = "atlassian-graphql-offlineUserAuthToken.graphql"

SDL = '''
"""Root of the gateway's mutations: only the one forge-runner calls."""
type Mutation {
  """Mint an offline token that acts as `input.userId` within the given contexts."""
  offlineUserAuthToken(input: OfflineUserAuthTokenInput!): OfflineUserAuthTokenResponse
}

"""The gateway needs a query root; nothing is served from it."""
type Query {
  _placeholder: Boolean
}

"""Who to act as, and where: the installation's context ARIs."""
input OfflineUserAuthTokenInput {
  userId: String!
  contextIds: [ID!]!
}

"""The same request for a UI extension of the app."""
input OfflineUserAuthTokenForExtensionInput {
  userId: String!
  extensionId: ID!
  contextIds: [ID!]!
}

"""A token for the user in session, for a UI extension."""
input UserAuthTokenForExtensionInput {
  extensionId: ID!
  contextIds: [ID!]!
}

"""Outcome of a mint: a token when `success`, otherwise `errors`."""
type OfflineUserAuthTokenResponse {
  authToken: AuthToken
  errors: [MutationError!]
  success: Boolean!
}

"""A bearer token and its lifetime in seconds (there is no absolute expiry)."""
type AuthToken {
  ttl: Int!
  token: String!
}

"""Why a mutation did not succeed."""
type MutationError {
  extensions: MutationErrorExtension
  message: String
}

"""Machine-readable details of a MutationError."""
type MutationErrorExtension {
  statusCode: Int
  errorType: String
}
'''


def project_schema() -> GraphQLSchema:
    """The schema built from the project's own SDL."""
    return build_schema(SDL)


def load_schema(spec_dir: Path | None) -> GraphQLSchema:
    """The real schema from ``spec_dir`` when given, else the project's own."""
    if spec_dir is None:
        return project_schema()
    path = spec_dir / SPEC_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            "sandbox.spec_dir", f"a folder holding {SPEC_FILE}", f"{path}: {exc.strerror}"
        ) from None
    try:
        return build_schema(text)
    except GraphQLError as exc:
        raise ConfigError("sandbox.spec_dir", f"a valid schema in {path}", exc.message) from None
