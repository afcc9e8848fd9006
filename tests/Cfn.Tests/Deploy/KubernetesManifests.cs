using System.Collections;
using System.Text.Json.Serialization;
using k8s;
using k8s.Models;
using static Cfn.Tests.Deploy.RulesTooling;

namespace Cfn.Tests.Deploy;

/// <summary>
/// deploy/kubernetes rendered by the real <c>kubectl kustomize</c> and read into the typed models of the KubernetesClient
/// package, strictly (a field the model does not have is an error), with small typed models of their own for the
/// Prometheus Operator's two kinds, which the package does not ship.
/// </summary>
internal static class KubernetesManifests
{
    /// <summary>The kustomizations a user applies: the base and the production overlay.</summary>
    public static readonly string[] EntryPoints = ["deploy/kubernetes/base", "deploy/kubernetes/overlays/production"];

    /// <summary>The overlay the runbook's commands are run against.</summary>
    public const string Production = "deploy/kubernetes/overlays/production";

    private static readonly Dictionary<string, Task<Rendered>> Cache = [];

    /// <summary>The YAML <c>kubectl kustomize</c> prints for an entry point, and its objects; rendered once per run.</summary>
    public static Task<Rendered> RenderAsync(string entryPoint)
    {
        lock (Cache)
        {
            if (!Cache.TryGetValue(entryPoint, out var task))
            {
                task = RenderUncachedAsync(entryPoint);
                Cache[entryPoint] = task;
            }

            return task;
        }
    }

    private static async Task<Rendered> RenderUncachedAsync(string entryPoint)
    {
        var (_, yaml) = await RunToolOkAsync("kubectl", "kustomize", entryPoint);
        var objects = KubernetesYaml.LoadAllFromString(yaml, TypeMap(), strict: true);
        return new Rendered(entryPoint, yaml, [.. objects.Cast<IKubernetesObject<V1ObjectMeta>>()]);
    }

    /// <summary>The package's map of apiVersion/kind to model, plus the two Prometheus Operator kinds.</summary>
    private static Dictionary<string, Type> TypeMap()
    {
        var map = new Dictionary<string, Type>(StringComparer.Ordinal)
        {
            ["monitoring.coreos.com/v1/PrometheusRule"] = typeof(PrometheusRule),
            ["monitoring.coreos.com/v1/PodMonitor"] = typeof(PodMonitor),
        };
        foreach (var type in typeof(V1Pod).Assembly.GetTypes())
        {
            var entity = type.GetCustomAttributes(typeof(KubernetesEntityAttribute), false).Cast<KubernetesEntityAttribute>().FirstOrDefault();
            if (entity is not null && !string.IsNullOrEmpty(entity.Kind))
            {
                var apiVersion = string.IsNullOrEmpty(entity.Group) ? entity.ApiVersion : entity.Group + "/" + entity.ApiVersion;
                map.TryAdd(apiVersion + "/" + entity.Kind, type);
            }
        }

        return map;
    }

    /// <summary>One rendered entry point.</summary>
    internal sealed record Rendered(string EntryPoint, string Yaml, IReadOnlyList<IKubernetesObject<V1ObjectMeta>> Objects)
    {
        public IEnumerable<T> OfType<T>() => Objects.OfType<T>();

        public V1StatefulSet? StatefulSet(string ns, string name) =>
            OfType<V1StatefulSet>().FirstOrDefault(s => s.Metadata.NamespaceProperty == ns && s.Metadata.Name == name);

        public V1Deployment? Deployment(string ns, string name) =>
            OfType<V1Deployment>().FirstOrDefault(d => d.Metadata.NamespaceProperty == ns && d.Metadata.Name == name);

        /// <summary>Every namespace the objects live in or create.</summary>
        public HashSet<string> Namespaces() =>
        [
            .. Objects.Select(o => o.Metadata.NamespaceProperty).OfType<string>(),
            .. OfType<V1Namespace>().Select(n => n.Metadata.Name),
        ];

        /// <summary>Every workload (StatefulSet, Deployment) with its namespace, name and pod template.</summary>
        public IEnumerable<(string Kind, string Namespace, string Name, int Replicas, V1PodTemplateSpec Template)> Workloads() =>
            OfType<V1StatefulSet>().Select(s => ("statefulset", s.Metadata.NamespaceProperty, s.Metadata.Name, s.Spec.Replicas ?? 1, s.Spec.Template))
                .Concat(OfType<V1Deployment>().Select(d => ("deployment", d.Metadata.NamespaceProperty, d.Metadata.Name, d.Spec.Replicas ?? 1, d.Spec.Template)));
    }

    // The Prometheus Operator's kinds, with the fields this repository uses; strict reading refuses any other.
    internal sealed class PrometheusRule : IKubernetesObject<V1ObjectMeta>
    {
        [JsonPropertyName("apiVersion")] public string ApiVersion { get; set; } = "";
        [JsonPropertyName("kind")] public string Kind { get; set; } = "";
        [JsonPropertyName("metadata")] public V1ObjectMeta Metadata { get; set; } = new();
        [JsonPropertyName("spec")] public RuleSpec Spec { get; set; } = new();
    }

    internal sealed class RuleSpec
    {
        [JsonPropertyName("groups")] public List<RuleGroup> Groups { get; set; } = [];
    }

    internal sealed class RuleGroup
    {
        [JsonPropertyName("name")] public string Name { get; set; } = "";
        [JsonPropertyName("interval")] public string? Interval { get; set; }
        [JsonPropertyName("rules")] public List<Rule> Rules { get; set; } = [];
    }

    internal sealed class Rule
    {
        [JsonPropertyName("record")] public string? Record { get; set; }
        [JsonPropertyName("alert")] public string? Alert { get; set; }
        [JsonPropertyName("expr")] public string Expr { get; set; } = "";
        [JsonPropertyName("for")] public string? For { get; set; }
        [JsonPropertyName("labels")] public Dictionary<string, string>? Labels { get; set; }
        [JsonPropertyName("annotations")] public Dictionary<string, string>? Annotations { get; set; }
    }

    internal sealed class PodMonitor : IKubernetesObject<V1ObjectMeta>
    {
        [JsonPropertyName("apiVersion")] public string ApiVersion { get; set; } = "";
        [JsonPropertyName("kind")] public string Kind { get; set; } = "";
        [JsonPropertyName("metadata")] public V1ObjectMeta Metadata { get; set; } = new();
        [JsonPropertyName("spec")] public PodMonitorSpec Spec { get; set; } = new();
    }

    internal sealed class PodMonitorSpec
    {
        [JsonPropertyName("selector")] public V1LabelSelector Selector { get; set; } = new();
        [JsonPropertyName("namespaceSelector")] public Dictionary<string, object>? NamespaceSelector { get; set; }
        [JsonPropertyName("podMetricsEndpoints")] public List<PodMetricsEndpoint> PodMetricsEndpoints { get; set; } = [];
    }

    internal sealed class PodMetricsEndpoint
    {
        [JsonPropertyName("port")] public string? Port { get; set; }
        [JsonPropertyName("path")] public string? Path { get; set; }
        [JsonPropertyName("interval")] public string? Interval { get; set; }
    }

    /// <summary>
    /// The objects as plain YAML trees, for comparing what the typed models kept with what kustomize printed: every scalar
    /// as its text, maps and lists as they are.
    /// </summary>
    public static object? Plain(object? node) => node switch
    {
        IDictionary<object, object> map => map.ToDictionary(kv => (string)kv.Key, kv => Plain(kv.Value), StringComparer.Ordinal)
            is var d ? new SortedDictionary<string, object?>(d, StringComparer.Ordinal) : null,
        IList list => list.Cast<object?>().Select(Plain).ToList(),
        null => null,
        _ => Convert.ToString(node, System.Globalization.CultureInfo.InvariantCulture),
    };
}
