"""Pure URL rewriting: a profile's routes (imagebuild.model.routes) as ordered rewrite rules.

Each rule rewrites files on the host (Python) and apt sources inside a build (sed, where there
is no Python yet) with the very same pattern.
"""

from dataclasses import dataclass

from imagebuild.model.mirror import MirrorProfile
from imagebuild.model.routes import Route

MAX_REWRITES_PER_LINE = 64


@dataclass(frozen=True)
class UrlRule(Route):
    """A route applied to text: every upstream prefix at a URL boundary becomes the mirror."""

    def apply(self, line: str) -> str:
        """Rewrite every occurrence in one line (no newline in it), leftmost first, as sed's loop does."""
        for _ in range(MAX_REWRITES_PER_LINE):
            rewritten = self.compiled.sub(lambda m: m.group(1) + self.mirror + m.group(3), line, count=1)
            if rewritten == line:
                return line
            line = rewritten
        raise ValueError(f"rule for {self.purpose} does not settle on: {line!r}")

    def sed(self, label: str) -> str:
        """The same rewrite as a sed -E loop (the mirror is checked free of '#' by the profile)."""
        replacement = self.mirror.replace("\\", "\\\\").replace("&", "\\&")
        return f":{label}\ns#{self.pattern}#\\1{replacement}\\3#\nt{label}\n"


@dataclass(frozen=True)
class RuleSet:
    """Ordered rules: specific ones (a named conda channel) before general ones (the alias)."""

    rules: tuple[UrlRule, ...] = ()

    def apply_line(self, line: str) -> str:
        for rule in self.rules:
            line = rule.apply(line)
        return line

    def apply(self, text: str) -> str:
        """Rewrite every line of `text`, keeping line endings and everything no rule matches."""
        return "".join(
            self.apply_line(line.rstrip("\r\n")) + line[len(line.rstrip("\r\n")) :]
            for line in text.splitlines(keepends=True)
        )

    def sed_script(self) -> str:
        return "".join(rule.sed(f"r{index}") for index, rule in enumerate(self.rules))

    def only(self, *purposes: str) -> "RuleSet":
        return RuleSet(tuple(rule for rule in self.rules if rule.purpose.split(":")[0] in purposes))

    def __bool__(self) -> bool:
        return bool(self.rules)


def url_rules(profile: MirrorProfile, *, extra_debian_upstreams: tuple[str, ...] = ()) -> RuleSet:
    """Every URL prefix rewrite a profile implies, purpose-tagged ('apt:debian', 'git', ...).

    `extra_debian_upstreams` adds archives that stand for Debian upstream on this host, such as
    the archive a root image was bootstrapped from.
    """
    routes = profile.routes(extra_debian_upstreams=extra_debian_upstreams)
    return RuleSet(tuple(UrlRule(route.upstreams, route.mirror, route.purpose) for route in routes))
