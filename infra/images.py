"""ECR repositories with images built and pushed by pulumi-docker-build (BuildKit)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

from infra.layer import component_type


def lifecycle_policy(keep_images: int) -> str:
    """Keep the newest ``keep_images`` images, tagged or not.

    Services deploy by digest and the stack tag moves to each new build, so every earlier
    image is untagged: expiring untagged images by age would delete the rollback targets.
    """
    if keep_images < 1:
        raise ValueError("ecrKeepImages must be at least 1")
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"Keep the last {keep_images} images (rollback targets)",
                    "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep_images},
                    "action": {"type": "expire"},
                },
            ]
        }
    )


class ServiceImage(pulumi.ComponentResource):
    """One app's ECR repository and its image, referenced by digest.

    The registry credentials come from ECR's authorization token, so nobody
    runs ``docker login``; a local Docker engine with BuildKit (buildx) is still needed
    to build. pulumi-docker-build replaces pulumi-docker 4's ``docker.Image`` and builds
    the same image: the same context, Dockerfile (and its ``<Dockerfile>.dockerignore``),
    build args and platform, through BuildKit as before. Raises ValueError on a platform
    BuildKit does not name (docker_build.Platform).
    """

    def __init__(
        self,
        name: str,
        *,
        app: str,
        apps_dir: Path,
        tag: str,
        build_args: Mapping[str, str] | None = None,
        keep_images: int = 20,
        force_delete: bool = False,
        platform: str = "linux/amd64",
        opts: pulumi.ResourceOptions | None = None,
    ):
        token = component_type("compute", "ServiceImage")
        super().__init__(token, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.repository = aws.ecr.Repository(
            name,
            image_scanning_configuration={"scan_on_push": True},
            image_tag_mutability="MUTABLE",  # the stack tag moves; services pin the digest
            encryption_configurations=[{"encryption_type": "AES256"}],
            force_delete=force_delete,
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            name,
            repository=self.repository.name,
            policy=lifecycle_policy(keep_images),
            opts=child,
        )
        token = aws.ecr.get_authorization_token_output(registry_id=self.repository.registry_id)
        self.image = docker_build.Image(
            name,
            tags=[self.repository.repository_url.apply(lambda url: f"{url}:{tag}")],
            context=docker_build.BuildContextArgs(location=str(apps_dir)),
            dockerfile=docker_build.DockerfileArgs(location=str(apps_dir / app / "Dockerfile")),
            platforms=[docker_build.Platform(platform)],
            build_args=dict(build_args or {}),
            push=True,
            registries=[docker_build.RegistryArgs(
                address=self.repository.repository_url,
                username=token.user_name,
                password=pulumi.Output.secret(token.password),
            )],
            opts=child,
        )
        self.repository_url = self.repository.repository_url
        self.repository_arn = self.repository.arn
        # Deploy by digest: a new build always rolls the service, a re-tag never does.
        self.image_ref = pulumi.Output.concat(self.repository.repository_url, "@", self.image.digest)
        self.register_outputs({"repositoryUrl": self.repository_url, "imageRef": self.image_ref})
