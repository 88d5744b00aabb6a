"""stacks.synth.synth_batch_template: the in-process synth the local runtime uses."""

from __future__ import annotations

from stacks.synth import FUNCTION_KEYS, synth_batch_template


def test_synth_batch_template_names_the_resources_the_local_runtime_needs() -> None:
    # GIVEN local-runtime overrides (ints, as the runtime passes them)
    # WHEN synthesizing in-process
    result = synth_batch_template({"pollIntervalSeconds": 1, "maxConcurrentJobs": 3})
    resources = result.template["Resources"]
    # THEN the logical ids point at the five functions, the data bucket and the state machine, with the overrides in
    assert set(result.function_logical_ids) == set(FUNCTION_KEYS)
    assert {resources[i]["Type"] for i in result.function_logical_ids.values()} == {"AWS::Lambda::Function"}
    assert resources[result.bucket_logical_id]["Type"] == "AWS::S3::Bucket"
    assert "LoggingConfiguration" in resources[result.bucket_logical_id]["Properties"]  # the data bucket, not its logs
    machine = resources[result.state_machine_logical_id]
    definition = "".join(p for p in machine["Properties"]["DefinitionString"]["Fn::Join"][1] if isinstance(p, str))
    assert '"Seconds":1,' in definition and '"MaxConcurrency":3,' in definition
