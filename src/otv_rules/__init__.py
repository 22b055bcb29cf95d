"""The rules: what otv computes once, in the gateway, for every practice.

Free time and bookable slots (`availability`), wall-clock rules exact on daylight-saving days
(`wallclock`), working time from a PVS's weekly hours, shifts and closed days (`working_time`),
slot pages (`availability_service`), and the find-or-create decision with German name and phone
normalisation (`names`, `contact_values`, `matching`).

A PVS vendor implements none of this: its adapter hands over raw data (`otv_sdk.ports`), and the
gateway applies these rules. Depends on `otv_sdk` models only; the SDK never imports it.
"""
