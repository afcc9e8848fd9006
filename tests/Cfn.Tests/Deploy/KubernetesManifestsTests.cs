using System.Text.RegularExpressions;
using k8s;
using k8s.Models;
using static Cfn.Tests.Deploy.KubernetesManifests;
using static Cfn.Tests.Deploy.RulesTooling;

namespace Cfn.Tests.Deploy;

/// <summary>
/// deploy/kubernetes: every entry point renders with the real kubectl, every object reads strictly into its typed model
/// and loses nothing on the way back, the objects issue 14 asks for are there with the runbook's names, and every
/// environment variable a cfn container gets is one cfn reads.
/// </summary>
public sealed partial class KubernetesManifestsTests
{
    public static TheoryData<string> Entries => [.. EntryPoints];

    [Theory]
    [MemberData(nameof(Entries))]
    public async Task Render_EveryObjectReadsStrictlyIntoItsTypedModelAndLosesNoField(string entryPoint)
    {
        var rendered = await RenderAsync(entryPoint);
        var documents = rendered.Yaml.Split("\n---\n").Where(d => !string.IsNullOrWhiteSpace(d)).ToList();
        Assert.Equal(documents.Count, rendered.Objects.Count);
        for (var i = 0; i < documents.Count; i++)
        {
            var o = rendered.Objects[i];
            var expected = ToYaml(Plain(ParseYaml(documents[i]))!);
            var roundTrip = ToYaml(Plain(ParseYaml(KubernetesYaml.Serialize(o)))!);
            Assert.True(expected == roundTrip,
                $"{entryPoint}: {o.Kind} {o.Metadata.NamespaceProperty}/{o.Metadata.Name} changes through its model ({o.GetType().Name}):\n" +
                $"--- rendered\n{expected}\n--- model\n{roundTrip}");
        }
    }

    [Fact]
    public void StrictReading_AnUnknownField_IsRefused()
    {
        // The check above relies on the strict reader refusing what a model lacks: a misspelt field must fail.
        const string yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  replicaz: 2\n";
        var e = Record.Exception(() => KubernetesYaml.LoadAllFromString(yaml, null, strict: true));
        Assert.NotNull(e);
        Assert.Contains("replicaz", e.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Entries))]
    public async Task Render_HasTheObjectsTheRunbookNames(string entryPoint)
    {
        var r = await RenderAsync(entryPoint);
        Assert.Contains("cfn-loop", r.OfType<V1Namespace>().Select(n => n.Metadata.Name));
        Assert.Contains("redis", r.OfType<V1Namespace>().Select(n => n.Metadata.Name));

        var coordinator = r.StatefulSet("cfn-loop", "coordinator") ?? throw new Xunit.Sdk.XunitException("no StatefulSet coordinator");
        Assert.Equal("coordinator", coordinator.Spec.Template.Metadata.Labels["app"]);
        var id = Assert.Single(Container(coordinator.Spec.Template, "coordinator").Env, e => e.Name == "COORDINATOR_ID");
        Assert.Equal("metadata.name", id.ValueFrom.FieldRef.FieldPath);
        Assert.Equal(["serve", "--role", "coordinator"], Container(coordinator.Spec.Template, "coordinator").Args);

        var validator = r.Deployment("cfn-loop", "validator") ?? throw new Xunit.Sdk.XunitException("no Deployment validator");
        Assert.Equal("validator", validator.Spec.Template.Metadata.Labels["role"]);
        Assert.NotNull(r.Deployment("cfn-loop", "swarm-manager"));
        Assert.Equal(2, r.Deployment("cfn-loop", "timeout-handler")?.Spec.Replicas);
        foreach (var (role, template) in new[] { ("validator", validator.Spec.Template), ("swarm-manager", r.Deployment("cfn-loop", "swarm-manager")!.Spec.Template), ("timeout-handler", r.Deployment("cfn-loop", "timeout-handler")!.Spec.Template) })
        {
            Assert.Equal(["serve", "--role", role], Container(template, role).Args);
        }

        var swarmConfig = Assert.Single(r.OfType<V1ConfigMap>(), c => c.Metadata.Name == "swarm-config" && c.Metadata.NamespaceProperty == "cfn-loop");
        Assert.Equal(coordinator.Spec.Replicas.ToString(), swarmConfig.Data["expectedCoordinators"]);

        var redis = r.StatefulSet("redis", "redis") ?? throw new Xunit.Sdk.XunitException("no StatefulSet redis in namespace redis");
        Assert.Equal("redis", redis.Spec.Template.Metadata.Labels["app"]);

        // The monitoring objects: the generated PrometheusRule itself (not a copy), the scrape, the dashboard for Grafana.
        var rule = Assert.Single(r.OfType<PrometheusRule>());
        Assert.Equal(Read(GeneratedManifest).Split('\n').Count(l => l.TrimStart().StartsWith("- alert:", StringComparison.Ordinal)),
            rule.Spec.Groups.Sum(g => g.Rules.Count(x => x.Alert is not null)));
        var podMonitor = Assert.Single(r.OfType<PodMonitor>());
        Assert.All(r.Workloads().Where(w => w.Namespace == "cfn-loop"), w =>
            Assert.True(podMonitor.Spec.Selector.MatchLabels.All(l => w.Template.Metadata.Labels.TryGetValue(l.Key, out var v) && v == l.Value),
                $"{w.Name}'s pods are not scraped by the PodMonitor"));
        var dashboard = Assert.Single(r.OfType<V1ConfigMap>(), c => c.Metadata.Labels?.TryGetValue("grafana_dashboard", out var v) == true && v == "1");
        Assert.Equal(Read("deploy/grafana/blocking-coordination.json"), dashboard.Data["blocking-coordination.json"]);
    }

    [Theory]
    [MemberData(nameof(Entries))]
    public async Task Render_EveryCfnContainer_ProbesResourcesNonRootAndOnlyVariablesCfnReads(string entryPoint)
    {
        var r = await RenderAsync(entryPoint);
        var known = ConfigurationVariables();
        var cfnWorkloads = r.Workloads().Where(w => w.Namespace == "cfn-loop").ToList();
        Assert.Equal(4, cfnWorkloads.Count);
        foreach (var w in cfnWorkloads)
        {
            var c = Assert.Single(w.Template.Spec.Containers);
            Assert.Equal(w.Name, c.Name);
            Assert.Equal("/health/live", c.LivenessProbe?.HttpGet?.Path);
            Assert.Equal("/health/ready", c.ReadinessProbe?.HttpGet?.Path);
            Assert.Contains(c.Ports, p => p.Name == "http" && p.ContainerPort == 8080);
            Assert.NotNull(c.Resources?.Requests);
            Assert.NotNull(c.Resources?.Limits);
            Assert.True(w.Template.Spec.SecurityContext?.RunAsNonRoot, $"{w.Name} may run as root");
            Assert.True(c.Image[(c.Image.LastIndexOf('/') + 1)..].Contains(':', StringComparison.Ordinal), $"{w.Name}: image {c.Image} has no tag");
            foreach (var e in c.Env)
            {
                Assert.True(known.Contains(e.Name), $"{entryPoint}: {w.Name} sets {e.Name}, which docs/configuration.md does not list (cfn does not read it)");
            }

            var secret = Assert.Single(c.Env, e => e.Name == "BLOCKING_COORDINATION_SECRET");
            Assert.Equal(("blocking-coordination-secret", "secret"), (secret.ValueFrom.SecretKeyRef.Name, secret.ValueFrom.SecretKeyRef.Key));
        }

        // The production overlay reaches Redis through Sentinel; every workload gets the same REDIS_URL, after the password
        // it expands.
        if (entryPoint == Production)
        {
            foreach (var w in cfnWorkloads)
            {
                var env = w.Template.Spec.Containers[0].Env.Select(e => e.Name).ToList();
                Assert.True(env.IndexOf("REDIS_URL") > env.IndexOf("REDIS_PASSWORD"), $"{w.Name}: REDIS_URL must follow REDIS_PASSWORD");
                Assert.Contains("serviceName=mymaster", w.Template.Spec.Containers[0].Env.Single(e => e.Name == "REDIS_URL").Value, StringComparison.Ordinal);
            }

            Assert.Equal(3, r.StatefulSet("redis", "redis")!.Spec.Replicas);
            Assert.Contains(r.OfType<V1Service>(), s => s.Metadata.Name == "redis-sentinel" && s.Spec.Ports.Any(p => p.Port == 26379));
            Assert.DoesNotContain(r.OfType<V1Secret>(), s => true);
        }
        else
        {
            Assert.Contains(r.OfType<V1Secret>(), s => s.Metadata.Name == "blocking-coordination-secret" && s.Metadata.NamespaceProperty == "cfn-loop");
        }
    }

    private static V1Container Container(V1PodTemplateSpec template, string name) =>
        template.Spec.Containers.SingleOrDefault(c => c.Name == name) ?? throw new Xunit.Sdk.XunitException($"no container {name}");

    /// <summary>The variables docs/configuration.md lists (first column of its tables): the ones cfn reads.</summary>
    internal static HashSet<string> ConfigurationVariables() =>
        [.. ConfigurationRow().Matches(Read("docs/configuration.md")).Select(m => m.Groups[1].Value)];

    [GeneratedRegex(@"^\| `([A-Z][A-Z0-9_]+)` \|", RegexOptions.Multiline)]
    private static partial Regex ConfigurationRow();
}
