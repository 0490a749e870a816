"""The project's own mutation schema says what the real gateway schema file says."""

from __future__ import annotations

from pathlib import Path

from graphql import (
    GraphQLInputObjectType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    build_schema,
)

from runner.sandbox.graphql_schema import SPEC_FILE, project_schema

Outline = dict[str, tuple[str, dict[str, str | tuple[str, dict[str, str]]]]]


def outline(schema: GraphQLSchema) -> Outline:
    """Every named type's kind and its fields (type with nullability, and argument types)."""
    result: Outline = {}
    for name, named in schema.type_map.items():
        if name.startswith("__"):
            continue
        result[name] = (type(named).__name__, _fields(named))
    return result


def _fields(named: GraphQLNamedType) -> dict[str, str | tuple[str, dict[str, str]]]:
    if isinstance(named, GraphQLInputObjectType):
        return {f: str(field.type) for f, field in named.fields.items()}
    if isinstance(named, GraphQLObjectType):
        return {
            f: (str(field.type), {a: str(arg.type) for a, arg in field.args.items()})
            for f, field in named.fields.items()
        }
    return {}


def test_project_schema_matches_the_real_file(specs_dir: Path) -> None:
    """Same types, fields, argument and field types and nullability; nothing more, nothing less."""
    real = build_schema((specs_dir / SPEC_FILE).read_text(encoding="utf-8"))
    ours = outline(project_schema())
    assert ours == outline(real)
    # The comparison is not vacuous: the mutation and its input are there, non-null where real.
    assert ours["OfflineUserAuthTokenInput"][1] == {"userId": "String!", "contextIds": "[ID!]!"}
    mutation = ours["Mutation"][1]["offlineUserAuthToken"]
    assert mutation == ("OfflineUserAuthTokenResponse", {"input": "OfflineUserAuthTokenInput!"})


def test_outline_tells_nullability_apart() -> None:
    """Dropping one ``!`` changes the outline, so the comparison above would catch it."""
    sdl = "type Query { a: Int! }"
    assert outline(build_schema(sdl)) != outline(build_schema(sdl.replace("!", "")))
