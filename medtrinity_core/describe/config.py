"""The describe stage's checks of a sources file: each generator's `prompt` is a usable template (bundled
by name, or a file relative to the sources file), replaced by its resolved reference."""

from __future__ import annotations

from medtrinity_core.describe.prompts import PromptError, load_prompt
from medtrinity_core.sources.schema import GeneratorSpec, Locator, SourcesFile


def validate(sources_file: SourcesFile, locate: Locator) -> SourcesFile:
    """Raises `SourcesFileError` at the line of the `prompt` key (else of `backend`, else of the generator);
    returns the file with every generator's prompt a bundled name or an absolute path."""
    base = sources_file.path.parent
    resolved: dict[GeneratorSpec, GeneratorSpec] = {}

    def resolve(spec: GeneratorSpec, loc: tuple) -> GeneratorSpec:
        if spec not in resolved:
            try:
                prompt = load_prompt(spec.prompt, base)
            except PromptError as exc:
                raise locate.error(loc + ("prompt",), str(exc), loc + ("prompt",), loc + ("backend",)) from None
            resolved[spec] = spec.model_copy(update={"prompt": prompt.ref})
        return resolved[spec]

    generator = resolve(sources_file.generator, ("generator",))
    sources = tuple(src.model_copy(update={"generator": resolve(src.generator, ("sources", i, "generator"))}) for i, src in enumerate(sources_file.sources))
    return sources_file.model_copy(update={"generator": generator, "sources": sources})
