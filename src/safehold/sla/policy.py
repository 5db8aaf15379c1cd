"""The written SLA policy, from the settings (docs/sla.md). Percentages are kept as
exact fractions: availability of exactly 99.9 % is not below 99.9 %, and a float
would sometimes say it is."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from safehold.config import Settings
from safehold.errors import ConfigError


def _pct(text: str, what: str) -> Fraction:
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError) as exc:
        raise ConfigError(f"{what}: {text!r} is not a number") from exc
    if not 0 <= value <= 100:
        raise ConfigError(f"{what}: {text!r} is not a percentage between 0 and 100")
    return value


def parse_credits(text: str) -> tuple[tuple[Fraction, Fraction], ...]:
    """"99.9:10,99:25,95:100" -> ((99.9, 10), (99, 25), (95, 100)): a credit of 10 %
    when availability is below 99.9 %, and so on; the largest applicable one counts."""
    table = []
    for part in (p for p in text.split(",") if p.strip()):
        level, sep, credit = part.partition(":")
        if not sep:
            raise ConfigError(f"sla_credits: {part!r} is not LEVEL:CREDIT, e.g. 99.9:10")
        table.append((_pct(level, "sla_credits level"), _pct(credit, "sla_credits credit")))
    return tuple(sorted(table, reverse=True))


@dataclass(frozen=True)
class Policy:
    availability: Fraction = Fraction("99.9")  # percent per calendar month
    rpo_seconds: float = 2.0
    rto_seconds: float = 900.0
    restore_max_age_seconds: float = 26 * 3600.0
    credits: tuple[tuple[Fraction, Fraction], ...] = parse_credits("99.9:10,99:25,95:100")
    durability_credit: Fraction = Fraction(100)
    drill_breach_seconds: float = 48 * 3600.0

    @classmethod
    def from_settings(cls, s: Settings) -> Policy:
        for name in ("sla_rpo_seconds", "sla_rto_minutes", "sla_restore_max_age_hours",
                     "sla_drill_breach_hours"):
            if float(getattr(s, name)) <= 0:
                raise ConfigError(f"{name} must be positive, not {getattr(s, name)!r}")
        return cls(availability=_pct(str(s.sla_availability_target), "sla_availability_target"),
                   rpo_seconds=float(s.sla_rpo_seconds),
                   rto_seconds=float(s.sla_rto_minutes) * 60,
                   restore_max_age_seconds=float(s.sla_restore_max_age_hours) * 3600,
                   credits=parse_credits(s.sla_credits),
                   durability_credit=_pct(str(s.sla_durability_credit), "sla_durability_credit"),
                   drill_breach_seconds=float(s.sla_drill_breach_hours) * 3600)

    def availability_credit(self, availability: Fraction | None) -> Fraction:
        """The credit owed for a month's availability (percent); None (nothing was
        measured) owes nothing, since nothing was promised yet."""
        if availability is None:
            return Fraction(0)
        return max((credit for level, credit in self.credits if availability < level),
                   default=Fraction(0))
