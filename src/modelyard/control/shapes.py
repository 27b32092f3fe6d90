"""What each control-plane request may hold: botocore's input shapes, as typed models.

A request body is checked against its operation's shape before any operation runs:
types (strict: ``"x"`` is not a number, ``1`` is not a string), required members,
lengths, ranges, patterns and enumerations, with the limits of SageMaker's API model.
Whatever a client sends, a mistake is a ``ValidationException`` worded as AWS words
it (``1 validation error detected: Value 'x' at 'maxResults' failed to satisfy
constraint: Member must be an integer``), never a 500. Members modelyard does not use
are ignored, as SageMaker ignores the ones a region does not support.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as ShapeError

from modelyard.errors import ControlValidation

__all__ = [
    "AddTags",
    "Container",
    "CreateEndpoint",
    "CreateEndpointConfig",
    "CreateModel",
    "DeleteTags",
    "DesiredWeightAndCapacity",
    "EndpointConfigRef",
    "EndpointRef",
    "ListTags",
    "Listing",
    "ModelRef",
    "ProductionVariant",
    "Tag",
    "UpdateEndpoint",
    "UpdateEndpointWeightsAndCapacities",
    "parse",
]

NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
Name = Annotated[str, Field(max_length=63, pattern=NAME_PATTERN)]
Timestamp = Annotated[float, Field(ge=0)]
TagKey = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$")]
TagValue = Annotated[str, Field(max_length=256, pattern=r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$")]
EnvironmentKey = Annotated[str, Field(max_length=1024, pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")]
EnvironmentValue = Annotated[str, Field(max_length=1024)]


class Shape(BaseModel):
    """A request shape: strict types, unknown members ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class Tag(Shape):
    Key: TagKey
    Value: TagValue


TagList = Annotated[list[Tag], Field(max_length=50)]


class MultiModel(Shape):
    ModelCacheSetting: Literal["Enabled", "Disabled"] = "Enabled"


class Container(Shape):
    Image: Annotated[str, Field(max_length=255)] | None = None
    ModelDataUrl: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    Mode: Literal["SingleModel", "MultiModel"] = "SingleModel"
    Environment: Annotated[dict[EnvironmentKey, EnvironmentValue], Field(max_length=100)] = Field(default_factory=dict)
    MultiModelConfig: MultiModel | None = None
    ContainerHostname: Annotated[str, Field(max_length=63)] | None = None


class CreateModel(Shape):
    ModelName: Name
    PrimaryContainer: Container | None = None
    Containers: Annotated[list[Container], Field(max_length=15)] | None = None
    ExecutionRoleArn: Annotated[str, Field(min_length=20, max_length=2048)] | None = None
    Tags: TagList = Field(default_factory=list)


class ProductionVariant(Shape):
    VariantName: Name
    ModelName: Name
    InstanceType: Annotated[str, Field(min_length=1, max_length=64)] = "ml.m5.large"
    InitialInstanceCount: Annotated[int, Field(ge=1, le=64)] = 1
    InitialVariantWeight: Annotated[float, Field(ge=0)] = 1.0


class CreateEndpointConfig(Shape):
    EndpointConfigName: Name
    ProductionVariants: Annotated[list[ProductionVariant], Field(min_length=1, max_length=10)]
    Tags: TagList = Field(default_factory=list)


class CreateEndpoint(Shape):
    EndpointName: Name
    EndpointConfigName: Name
    Tags: TagList = Field(default_factory=list)


class UpdateEndpoint(Shape):
    EndpointName: Name
    EndpointConfigName: Name


class DesiredWeightAndCapacity(Shape):
    VariantName: Name
    DesiredWeight: Annotated[float, Field(ge=0)] | None = None
    DesiredInstanceCount: Annotated[int, Field(ge=1, le=64)] | None = None


class UpdateEndpointWeightsAndCapacities(Shape):
    EndpointName: Name
    DesiredWeightsAndCapacities: Annotated[list[DesiredWeightAndCapacity], Field(min_length=1, max_length=10)]


class ModelRef(Shape):
    ModelName: Name


class EndpointConfigRef(Shape):
    EndpointConfigName: Name


class EndpointRef(Shape):
    EndpointName: Name


class Listing(Shape):
    """The members every List* operation takes (``StatusEquals`` only for endpoints)."""

    SortBy: Literal["Name", "CreationTime", "Status"] = "CreationTime"
    SortOrder: Literal["Ascending", "Descending"] = "Descending"
    NextToken: Annotated[str, Field(max_length=8192, pattern=r"^[0-9]*$")] | None = None
    MaxResults: Annotated[int, Field(ge=1, le=100)] = 100
    NameContains: Annotated[str, Field(max_length=63, pattern=r"^[a-zA-Z0-9-]*$")] | None = None
    CreationTimeBefore: Timestamp | None = None
    CreationTimeAfter: Timestamp | None = None
    LastModifiedTimeBefore: Timestamp | None = None
    LastModifiedTimeAfter: Timestamp | None = None
    StatusEquals: (
        Literal[
            "OutOfService",
            "Creating",
            "Updating",
            "SystemUpdating",
            "RollingBack",
            "InService",
            "Deleting",
            "Failed",
            "UpdateRollbackFailed",
        ]
        | None
    ) = None


Arn = Annotated[str, Field(max_length=256, pattern=r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]*:[0-9]{12}:.+$")]


class AddTags(Shape):
    ResourceArn: Arn
    Tags: TagList


class ListTags(Shape):
    ResourceArn: Arn
    NextToken: Annotated[str, Field(max_length=8192, pattern=r"^[0-9]*$")] | None = None
    MaxResults: Annotated[int, Field(ge=50)] = 50


class DeleteTags(Shape):
    ResourceArn: Arn
    TagKeys: Annotated[list[TagKey], Field(min_length=1, max_length=50)]


S = TypeVar("S", bound=Shape)

_CONSTRAINTS = {
    "missing": "Member must not be null",
    "string_pattern_mismatch": "Member must satisfy regular expression pattern: {pattern}",
    "string_too_long": "Member must have length less than or equal to {max_length}",
    "string_too_short": "Member must have length greater than or equal to {min_length}",
    "too_long": "Member must have length less than or equal to {max_length}",
    "too_short": "Member must have length greater than or equal to {min_length}",
    "greater_than_equal": "Member must have value greater than or equal to {ge}",
    "less_than_equal": "Member must have value less than or equal to {le}",
    "literal_error": "Member must satisfy enum value set: [{expected}]",
    "string_type": "Member must be a string",
    "int_type": "Member must be an integer",
    "float_type": "Member must be a number",
    "finite_number": "Member must be a finite number",
    "bool_type": "Member must be a boolean",
    "list_type": "Member must be a list",
    "dict_type": "Member must be a map",
    "model_type": "Member must be a structure",
}


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts += [str(part + 1), "member"]
        elif part[:1].isupper():
            parts.append(part[0].lower() + part[1:])
        else:
            parts.append(part)  # a map key
    return ".".join(parts)


def _value(error: Any) -> str:
    if error["type"] == "missing":
        return "null"
    shown = str(error.get("input"))
    return f"'{shown[:100]}{'...' if len(shown) > 100 else ''}'"


def parse(shape: type[S], body: dict[str, Any]) -> S:
    """``body`` as ``shape``, or a :class:`ControlValidation` listing every problem."""
    try:
        return shape.model_validate(body)
    except ShapeError as exc:
        errors = exc.errors(include_url=False)
        problems = []
        for error in errors:
            template = _CONSTRAINTS.get(error["type"], "Member is not valid")
            constraint = template.format(**{k: v for k, v in (error.get("ctx") or {}).items()})
            if error["type"] == "literal_error":
                constraint = constraint.replace("'", "").replace(" or ", ", ")
            where = _location(error["loc"])
            problems.append(f"Value {_value(error)} at '{where}' failed to satisfy constraint: {constraint}")
        count = len(problems)
        raise ControlValidation(
            f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(problems)
        ) from exc
