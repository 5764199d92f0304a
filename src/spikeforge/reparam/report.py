"""Human-readable form of a :func:`spikeforge.reparam.verify` result (markdown tables)."""

from __future__ import annotations

from typing import Any

VIEWS = (("ann", "ANN (same architecture, dense MACs of one step)"),
         ("snn", "pure SNN proxy (every site spiking, same weights)"),
         ("hybrid", "hybrid (layers after a SpikingReLU: dense MACs)"),
         ("hybrid_event_view", "hybrid, multi-level inputs counted as planes"),
         ("converted", "converted (event-driven)"))


def passed(res: dict[str, Any]) -> bool:
    """The verification's verdict: equal outputs and binary inputs wherever the model input is not read."""
    event = res.get("event_runtime")
    event_ok = event is None or bool(event["equal"] and event["counts_match_verifier"])
    return bool(res["exact"] and res.get("binary_hidden_inputs", res["binary_inputs"]) and event_ok)


def _certificate_lines(cert: dict[str, Any] | None) -> list[str]:
    if cert is None:
        return ["- certificate: not available for this (format 1) converted model; reconvert it"]
    margin = "n/a" if cert["margin"] is None else f"{cert['margin']:.3g}"
    return [f"- certificate: {cert['guarantee']} ({cert['decisions']:,} decisions, {cert['exact_decisions']:,} by "
            f"identical arithmetic, {cert['uncertified_decisions']:,} not certified)",
            f"  smallest margin {margin}, {cert['near_boundary']} within {cert['near_boundary_tolerance']:g}; "
            f"largest bound {cert['max_bound']:.3g}; certified |logit difference| <= {cert['logit_bound']:.3g}",
            f"  a float32 consumer: {'certified' if cert['float32_certified'] else 'not certified'} "
            f"({cert['float32_uncertified_decisions']:,} decisions within its bound)"]


def format_report(res: dict[str, Any]) -> str:
    ok = "PASS" if passed(res) else "FAIL"
    lines = [f"verification: {ok}  ({res['samples']} samples, T = {res['time_steps']}, float64)", "",
             f"- max |logit difference|: {res['max_abs_logit_diff']:.3g} (required <= 1e-9)",
             f"- argmax agreement: {res['argmax_agreement']:.6f} (required 1.0)",
             f"- spikes/levels differing from the hybrid: {res['spike_flips']}",
             *_certificate_lines(res.get("certificate")),
             f"- binary inputs to every synaptic layer: {res['binary_inputs']}"
             + ("" if res["binary_inputs"] else f" (first non-binary layer: {res['first_non_binary']})")]
    if res["analog_input_layers"]:
        lines.append(f"- analog first layer (costs MACs): {', '.join(res['analog_input_layers'])}")
    if "neuron_only" in res:
        lines.append(f"- only neurons and threshold units as nonlinearities: {res['neuron_only']}"
                     + ("" if res["neuron_only"] else f" (also: {', '.join(res['non_neuron_nodes'])})"))
    if res.get("unit_sites"):
        lines.append(f"- spikes per sample {res['spikes']:.4g}; threshold-unit accumulations per sample "
                     f"{res['unit_sops']:.4g} (included in the SOPs)")
    if "accuracy" in res:
        acc = (f"- accuracy: converted {100 * res['accuracy']:.2f} %, "
               f"hybrid {100 * res['hybrid_accuracy']:.2f} %")
        if "snn_accuracy" in res:
            acc += f", pure SNN proxy {100 * res['snn_accuracy']:.2f} % (untrained as such)"
        lines.append(acc)
    e = res["energy_model"]
    lines += ["", f"energy per sample (E_AC = {e['e_ac_pj']} pJ, E_MAC = {e['e_mac_pj']} pJ, 45 nm, "
              "Horowitz 2014)",
              "", "| model | SOPs | MACs | energy (uJ) |", "|---|---:|---:|---:|"]
    for key, label in VIEWS:
        if key in res["energy"]:
            v = res["energy"][key]
            lines.append(f"| {label} | {v['sops']:.4g} | {v['macs']:.4g} | {v['energy_pj'] / 1e6:.4g} |")
    lines += ["", "| converted layer | kind | input rate | binary | MACs/step | SOPs | energy (pJ) |",
              "|---|---|---:|---|---:|---:|---:|"]
    for lay in res["layers"]:
        sops = f"{lay['sops']:.4g}" if lay["binary"] else "(dense: MACs)"
        lines.append(f"| {lay['name']} | {lay['kind']} | {lay['rate']:.4f} | {lay['binary']} | "
                     f"{lay['macs_per_step']:.4g} | {sops} | {lay['energy_pj']:.4g} |")
    if "event_runtime" in res:
        from ..runtime.check import format_event_section

        ev = res["event_runtime"]
        lines += format_event_section(ev)
        lines.append(f"\ncounts equal to the verifier's SOPs/MACs: {ev['counts_match_verifier']}")
    return "\n".join(lines) + "\n"
