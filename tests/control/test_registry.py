"""The registry in memory and the snapshots published from it (issue 8, part 2).

Checked against a brute-force model with hypothesis: after any sequence of
registrations, replacements, deregistrations, lease expiries and
resynchronisations,

* the registry holds what the model holds, and its running content hash is
  the hash computed from scratch;
* ``changes_since(r)`` turns the content at revision ``r`` into the current one;
* a delta body applied by the sidecar's ``apply_delta`` to the full body of
  an earlier snapshot gives exactly the current full body (the server and the
  sidecar agree on the format);
* the etag depends on the content only.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.control.snapshot import Publisher
from seawall.control.store import ConfigRecord, Instance
from seawall.control.store.registry import Registry, endpoint_entry
from seawall.proxy.control_link import apply_delta

SERVICES = ["front", "front-api", "pay"]

instances = st.builds(
    Instance,
    id=st.sampled_from(["a", "b", "c", "d", "e", "f"]),
    service=st.sampled_from(SERVICES),
    address=st.sampled_from(["127.0.0.1", "10.0.0.2"]),
    port=st.integers(18000, 18003),
    subset=st.sampled_from([None, "v1", "v2"]),
    metadata=st.sampled_from([{}, {"zone": "a"}]),
)
ops = st.one_of(
    st.tuples(st.just("put"), instances, st.integers(1, 4)),
    st.tuples(st.just("remove"), st.sampled_from(["a", "b", "c", "d", "e", "f"])),
    st.tuples(st.just("remove_lease"), st.integers(1, 4)),
    st.tuples(st.just("replace_all"), st.lists(st.tuples(instances, st.integers(1, 4)))),
    st.tuples(st.just("publish")),
    st.tuples(st.just("config"), st.integers(1, 3)),
)


def canonical(model: dict[str, tuple[Instance, int]]) -> dict[str, list[dict[str, Any]]]:
    by_service: dict[str, list[Instance]] = {}
    for inst, _ in model.values():
        by_service.setdefault(inst.service, []).append(inst)
    return {
        s: [endpoint_entry(i) for i in sorted(v, key=lambda i: (i.address, i.port, i.id))]
        for s, v in sorted(by_service.items())
    }


def apply_model(model: dict[str, tuple[Instance, int]], op: tuple[Any, ...]) -> None:
    if op[0] == "put":
        model[op[1].id] = (op[1], op[2])
    elif op[0] == "remove":
        model.pop(op[1], None)
    elif op[0] == "remove_lease":
        for iid in [i for i, (_, lease) in model.items() if lease == op[1]]:
            del model[iid]
    elif op[0] == "replace_all":
        model.clear()
        for inst, lease in op[1]:
            model[inst.id] = (inst, lease)


def config(n: int) -> ConfigRecord:
    return ConfigRecord(n, f"digest-{n}", json.dumps({"mesh": "m", "n": n}), 0.0)


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, max_size=40))
def test_registry_publisher_and_deltas_agree_with_a_model(steps: list[tuple[Any, ...]]) -> None:
    registry = Registry(log_size=8)  # small: deltas from old snapshots fall back to full ones
    publisher = Publisher(registry)
    model: dict[str, tuple[Instance, int]] = {}
    seen: list[tuple[str, dict[str, Any]]] = [
        (publisher.current.etag, json.loads(publisher.full_body()))
    ]
    for op in steps:
        if op[0] == "put":
            registry.put(op[1], op[2])
        elif op[0] == "remove":
            registry.remove(op[1])
        elif op[0] == "remove_lease":
            registry.remove_lease(op[1])
        elif op[0] == "replace_all":
            registry.replace_all(op[1])
        elif op[0] == "config":
            publisher.set_config(config(op[1]), None)
        apply_model(model, op)
        # the registry holds what the model holds; its hash is the hash from scratch
        assert {i.id: (i, registry.lease_of(i.id)) for i in registry.instances()} == model
        fresh = Registry()
        for inst, lease in model.values():
            fresh.put(inst, lease)
        assert registry.content_hash == fresh.content_hash
        if op[0] != "publish":
            continue
        publisher.publish()
        full = json.loads(publisher.full_body())
        assert full["endpoints"] == canonical(model)
        assert full["etag"] == publisher.current.etag
        # from every snapshot seen so far: a delta (or None: too old), which the
        # sidecar's apply_delta turns into exactly the current snapshot
        for etag, earlier in seen:
            if etag == publisher.current.etag:
                continue
            delta = publisher.delta_body(etag)
            if delta is None:
                continue
            rebuilt = apply_delta(earlier, json.loads(delta))
            assert rebuilt == full
        seen.append((publisher.current.etag, full))


def test_the_etag_depends_on_the_content_only() -> None:
    a, b = Registry(), Registry()
    one = Instance("pay.1", "pay", "127.0.0.1", 18003)
    two = Instance("pay.2", "pay", "127.0.0.1", 18013, "v2")
    a.put(one, 1)
    a.put(two, 2)
    b.put(two, 7)
    b.put(Instance("pay.3", "pay", "127.0.0.1", 1), 8)
    b.remove("pay.3")
    b.put(one, 9)
    pa, pb = Publisher(a), Publisher(b)
    assert pa.current.etag == pb.current.etag
    assert pa.full_body() == pb.full_body()
    # a re-registration of the same endpoint (new lease, new metadata) changes nothing pushed
    revision = a.revision
    assert not a.put(Instance("pay.1", "pay", "127.0.0.1", 18003, metadata={"k": "v"}), 5)
    assert a.revision == revision


def test_a_delta_carries_the_config_only_when_it_changed() -> None:
    registry = Registry()
    publisher = Publisher(registry)
    publisher.set_config(config(1), None)
    publisher.publish()
    base = publisher.current.etag
    registry.put(Instance("pay.1", "pay", "127.0.0.1", 18003), 1)
    publisher.publish()
    delta = json.loads(publisher.delta_body(base) or b"{}")
    assert "config" not in delta
    assert delta["changes"] == {
        "pay": {"put": [endpoint_entry(registry.get("pay.1"))], "removed": []}  # type: ignore[arg-type]
    }
    second = publisher.current.etag
    publisher.set_config(config(2), None)
    publisher.publish()
    delta = json.loads(publisher.delta_body(second) or b"{}")
    assert delta["config"]["version"] == 2
    assert delta["changes"] == {}
    assert publisher.delta_body("unknown-etag") is None


def test_cost_per_change_does_not_grow_with_the_registry() -> None:
    """Counted, not timed: a change touches O(1) entries of the log and one fragment."""
    registry = Registry()
    publisher = Publisher(registry)
    for n in range(5000):
        registry.put(Instance(f"s{n % 5}.{n}", f"s{n % 5}", "127.0.0.1", 20000 + n), n)
    publisher.publish()
    publisher.full_body()
    base = publisher.current.etag
    registry.put(Instance("s1.new", "s1", "127.0.0.1", 1), 99999)
    publisher.publish()
    delta = json.loads(publisher.delta_body(base) or b"{}")
    assert list(delta["changes"]) == ["s1"]
    assert len(delta["changes"]["s1"]["put"]) == 1
    # the full body re-serializes only the service that changed
    before = dict(publisher._fragments)
    publisher.full_body()
    changed = [s for s in publisher._fragments if publisher._fragments[s] is not before.get(s)]
    assert changed == ["s1"]
