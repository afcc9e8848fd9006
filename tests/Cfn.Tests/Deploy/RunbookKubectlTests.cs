using System.Text;
using System.Text.RegularExpressions;
using k8s.Models;
using static Cfn.Tests.Deploy.KubernetesManifests;
using static Cfn.Tests.Deploy.RulesTooling;

namespace Cfn.Tests.Deploy;

/// <summary>
/// Every kubectl command of docs/runbook.md names things the production manifests create: its namespaces (<c>-n</c>),
/// workloads (<c>deploy/NAME</c>, <c>statefulset/NAME</c>, <c>statefulset NAME</c>), ConfigMaps and their keys, pods
/// (<c>coordinator-1</c>, <c>redis-0</c>, and <c>coordinator-$i</c> over the loop's range), label selectors
/// (<c>-l key=value</c>), containers (<c>-c</c>, <c>--target</c>, a patch's container name) and, for <c>kubectl set
/// env</c>, variables cfn reads.
/// </summary>
public sealed partial class RunbookKubectlTests
{
    private static readonly HashSet<string> FlagsWithValue =
        ["-n", "--namespace", "-l", "--selector", "-c", "--container", "-o", "--output", "-p", "--patch", "-f", "--filename"];

    private static readonly Dictionary<string, string> Kinds = new(StringComparer.Ordinal)
    {
        ["deploy"] = "deployment", ["deployment"] = "deployment", ["deployments"] = "deployment",
        ["statefulset"] = "statefulset", ["statefulsets"] = "statefulset", ["sts"] = "statefulset",
        ["pod"] = "pod", ["pods"] = "pod", ["po"] = "pod",
        ["configmap"] = "configmap", ["configmaps"] = "configmap", ["cm"] = "configmap",
        ["secret"] = "secret", ["service"] = "service", ["svc"] = "service",
    };

    [Fact]
    public void Parser_ReadsTheRunbooksForms()
    {
        var c = Parse("kubectl exec -n cfn-loop deploy/swarm-manager -- curl -s http://localhost:8080/api/swarms/status", null);
        Assert.Equal("cfn-loop", c.Namespace);
        Assert.Equal([("deployment", "swarm-manager")], c.Resources);

        c = Parse("kubectl get pods -n cfn-loop -l role=validator", null);
        Assert.Equal([("role", "validator")], c.Selectors);
        Assert.Empty(c.Resources);

        c = Parse("kubectl exec -n cfn-loop coordinator-$i -- redis-cli ping", (0, 4));
        Assert.Equal(["coordinator-0", "coordinator-1", "coordinator-2", "coordinator-3", "coordinator-4"], c.Resources.Select(r => r.Name));

        c = Parse("kubectl patch statefulset coordinator -n cfn-loop -p '{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"coordinator\",\"env\":[]}]}}}}'", null);
        Assert.Equal([("statefulset", "coordinator")], c.Resources);
        Assert.Equal(["coordinator"], c.Containers);

        c = Parse("kubectl get configmap swarm-config -n cfn-loop -o jsonpath='{.data.expectedCoordinators}'", null);
        Assert.Equal([("configmap", "swarm-config")], c.Resources);
        Assert.Equal(["expectedCoordinators"], c.DataKeys);

        c = Parse("kubectl set env deployment/validator -n cfn-loop ENABLE_VALIDATION_CACHE=true", null);
        Assert.Equal(["ENABLE_VALIDATION_CACHE"], c.EnvNames);

        c = Parse("kubectl delete pod -n cfn-loop \"${HOST:-$COORD}\" --force --grace-period=0", null);
        Assert.Empty(c.Resources);
    }

    [Fact]
    public async Task Runbook_EveryKubectlCommand_NamesObjectsTheProductionManifestsCreate()
    {
        var r = await RenderAsync(Production);
        var commands = Commands(Read(RunbookFile));
        Assert.True(commands.Count >= 40, $"only {commands.Count} kubectl commands found in the runbook");
        var problems = Problems(r, commands);
        Assert.True(problems.Count == 0, string.Join('\n', problems));
    }

    [Fact]
    public async Task Check_NamesTheManifestsDoNotCreate_AreReported()
    {
        // The check above passing means something only if it reports what is wrong: one wrong name of each kind.
        var r = await RenderAsync(Production);
        var wrong = new List<(int, string, (int, int)?)>
        {
            (1, "kubectl exec -n cfn-loop coordinator-$i -- ping -c 5 redis", (0, 5)),
            (2, "kubectl rollout restart deployment/coordinator -n cfn-loop", null),
            (3, "kubectl get pods -n cfn-loop -l app=validators", null),
            (4, "kubectl logs -n redis-ha redis-0", null),
            (5, "kubectl set resources deployment/validator -n cfn-loop -c validators --requests=cpu=1", null),
            (6, "kubectl get configmap swarm-config -n cfn-loop -o jsonpath='{.data.expected}'", null),
            (7, "kubectl set env statefulset/coordinator -n cfn-loop BLOCKING_TIMEOUT=1 REDIS_TIMEOUT_MS=5", null),
            (8, "kubectl exec -n cfn-loop swarm-manager -- curl -s http://localhost:8080/api/swarms/status", null),
        };
        var problems = Problems(r, wrong);
        Assert.Contains(problems, p => p.Contains("pod cfn-loop/coordinator-5 is not", StringComparison.Ordinal));
        Assert.DoesNotContain(problems, p => p.Contains("coordinator-4 is not", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Contains("deployment cfn-loop/coordinator is not", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Contains("label app=validators", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Contains("namespace redis-ha does not exist", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Contains("no container validators", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Contains("no key expected", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Contains("REDIS_TIMEOUT_MS is not a variable", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Contains("pod cfn-loop/swarm-manager is not", StringComparison.Ordinal));
        Assert.Equal(9, problems.Count);
    }

    private static List<string> Problems(Rendered r, List<(int Line, string Text, (int From, int To)? Range)> commands)
    {
        var variables = KubernetesManifestsTests.ConfigurationVariables();
        var problems = new List<string>();
        var namespaces = r.Namespaces();
        foreach (var (line, text, range) in commands)
        {
            var c = Parse(text, range);
            void Problem(string what) => problems.Add($"runbook line {line}: {what}\n    {text}");
            if (c.Namespace is { } ns && !namespaces.Contains(ns))
            {
                Problem($"namespace {ns} does not exist");
            }

            var where = c.Namespace ?? "cfn-loop";
            foreach (var (kind, name) in c.Resources)
            {
                var found = kind switch
                {
                    "deployment" => r.Deployment(where, name) is not null,
                    "statefulset" => r.StatefulSet(where, name) is not null,
                    "pod" => PodExists(r, where, name),
                    "configmap" => r.OfType<V1ConfigMap>().Any(m => m.Metadata.NamespaceProperty == where && m.Metadata.Name == name),
                    "service" => r.OfType<V1Service>().Any(s => s.Metadata.NamespaceProperty == where && s.Metadata.Name == name),
                    "secret" => true, // created by hand in production (docs/deployment.md); the base carries a placeholder
                    _ => false,
                };
                if (!found)
                {
                    Problem($"{kind} {where}/{name} is not in the rendered manifests");
                }
            }

            foreach (var (key, value) in c.Selectors)
            {
                if (!r.Workloads().Any(w => w.Namespace == where && w.Template.Metadata.Labels.TryGetValue(key, out var v) && v == value))
                {
                    Problem($"no pod in {where} carries the label {key}={value}");
                }
            }

            foreach (var container in c.Containers)
            {
                var targets = r.Workloads().Where(w => w.Namespace == where && (c.Resources.Count == 0 || c.Resources.Any(x => x.Name == w.Name || x.Name.StartsWith(w.Name + "-", StringComparison.Ordinal))));
                if (!targets.Any(w => w.Template.Spec.Containers.Any(k => k.Name == container)))
                {
                    Problem($"no container {container}");
                }
            }

            foreach (var key in c.DataKeys)
            {
                if (!r.OfType<V1ConfigMap>().Any(m => m.Metadata.NamespaceProperty == where && c.Resources.Any(x => x.Name == m.Metadata.Name) && m.Data.ContainsKey(key)))
                {
                    Problem($"the ConfigMap has no key {key}");
                }
            }

            foreach (var name in c.EnvNames)
            {
                if (!variables.Contains(name))
                {
                    Problem($"{name} is not a variable cfn reads (docs/configuration.md)");
                }
            }
        }

        return problems;
    }

    /// <summary>A pod name the manifests produce: a StatefulSet's name and an ordinal below its replicas.</summary>
    private static bool PodExists(Rendered r, string ns, string pod)
    {
        var dash = pod.LastIndexOf('-');
        return dash > 0 && int.TryParse(pod[(dash + 1)..], out var ordinal)
            && r.StatefulSet(ns, pod[..dash]) is { } set && ordinal >= 0 && ordinal < (set.Spec.Replicas ?? 1);
    }

    internal sealed record Command(
        string? Namespace,
        List<(string Kind, string Name)> Resources,
        List<(string Key, string Value)> Selectors,
        List<string> Containers,
        List<string> DataKeys,
        List<string> EnvNames);

    /// <summary>
    /// The kubectl commands of the runbook's code blocks (continuation lines joined) and inline code, each with its line
    /// and the range of a <c>for i in {A..B}</c> loop of the same block.
    /// </summary>
    internal static List<(int Line, string Text, (int From, int To)? Range)> Commands(string markdown)
    {
        var result = new List<(int, string, (int, int)?)>();
        var lines = markdown.Split('\n');
        var inFence = false;
        (int, int)? range = null;
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i];
            if (line.TrimStart().StartsWith("```", StringComparison.Ordinal))
            {
                inFence = !inFence;
                range = null;
                continue;
            }

            if (!inFence)
            {
                // Inline commands with an ellipsis leave out their arguments: only the complete ones are checked.
                foreach (Match m in InlineKubectl().Matches(line))
                {
                    if (!m.Groups[1].Value.Contains('…', StringComparison.Ordinal))
                    {
                        result.Add((i + 1, m.Groups[1].Value, null));
                    }
                }

                continue;
            }

            var start = i;
            var text = new StringBuilder(line.TrimEnd());
            while (text.Length > 0 && text[^1] == '\\' && i + 1 < lines.Length)
            {
                text.Length--;
                text.Append(' ').Append(lines[++i].Trim());
            }

            var joined = text.ToString();
            if (LoopRange().Match(joined) is { Success: true } loop)
            {
                range = (int.Parse(loop.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), int.Parse(loop.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
            }

            var at = joined.IndexOf("kubectl ", StringComparison.Ordinal);
            if (at >= 0 && !joined.TrimStart().StartsWith('#'))
            {
                result.Add((start + 1, joined[at..], range));
            }
        }

        return result;
    }

    /// <summary>What one kubectl command names.</summary>
    internal static Command Parse(string text, (int From, int To)? range)
    {
        var tokens = Tokens(text);
        string? ns = null;
        var positionals = new List<string>();
        var c = new Command(null, [], [], [], [], []);
        for (var i = 1; i < tokens.Count; i++)
        {
            var t = tokens[i];
            if (t is "--" or "|" or ";" or "&&" or "||" or ")" || t.StartsWith("<<", StringComparison.Ordinal))
            {
                break;
            }

            string? flag = null, value = null;
            if (t.StartsWith('-') && t.Contains('=', StringComparison.Ordinal))
            {
                (flag, value) = (t[..t.IndexOf('=', StringComparison.Ordinal)], t[(t.IndexOf('=', StringComparison.Ordinal) + 1)..]);
            }
            else if (FlagsWithValue.Contains(t) && i + 1 < tokens.Count)
            {
                (flag, value) = (t, tokens[++i]);
            }
            else if (t.StartsWith('-'))
            {
                continue;
            }
            else
            {
                positionals.Add(t);
                continue;
            }

            switch (flag)
            {
                case "-n" or "--namespace":
                    ns = value;
                    break;
                case "-l" or "--selector":
                    foreach (var pair in value!.Split(','))
                    {
                        var eq = pair.IndexOf('=', StringComparison.Ordinal);
                        if (eq > 0 && !pair.Contains('$', StringComparison.Ordinal))
                        {
                            c.Selectors.Add((pair[..eq], pair[(eq + 1)..]));
                        }
                    }

                    break;
                case "-c" or "--container" or "--target":
                    c.Containers.Add(value!);
                    break;
                case "-o" or "--output":
                    c.DataKeys.AddRange(JsonPathDataKey().Matches(value!).Select(m => m.Groups[1].Value));
                    break;
                case "-p" or "--patch":
                    if (PatchContainers().Match(value!) is { Success: true } containers)
                    {
                        c.Containers.AddRange(PatchName().Matches(containers.Value).Select(m => m.Groups[1].Value));
                    }

                    break;
            }
        }

        if (positionals.Count > 0 && positionals[0] is "rollout" or "set" && positionals.Count > 1)
        {
            positionals.RemoveAt(1);
        }

        var verb = positionals.Count > 0 ? positionals[0] : "";
        var rest = positionals.Skip(1).Where(p => !p.Contains('…', StringComparison.Ordinal)).ToList();
        if (verb == "set" && rest.Count > 0)
        {
            c.EnvNames.AddRange(rest.Where(p => p.Contains('=', StringComparison.Ordinal)).Select(p => p[..p.IndexOf('=', StringComparison.Ordinal)]));
            rest = [.. rest.Where(p => !p.Contains('=', StringComparison.Ordinal))];
        }

        void Add(string kind, string name)
        {
            if (name.EndsWith("-$i", StringComparison.Ordinal) && range is var (from, to))
            {
                for (var k = from; k <= to; k++)
                {
                    c.Resources.Add((kind, name[..^2] + k.ToString(System.Globalization.CultureInfo.InvariantCulture)));
                }
            }
            else if (!name.Contains('$', StringComparison.Ordinal) && !name.Contains('"', StringComparison.Ordinal))
            {
                c.Resources.Add((kind, name));
            }
        }

        if (rest.Count > 0 && rest[0].Contains('/', StringComparison.Ordinal))
        {
            foreach (var reference in rest.Where(p => p.Contains('/', StringComparison.Ordinal)))
            {
                var slash = reference.IndexOf('/', StringComparison.Ordinal);
                if (Kinds.TryGetValue(reference[..slash], out var kind))
                {
                    Add(kind, reference[(slash + 1)..]);
                }
            }
        }
        else if (rest.Count > 0 && Kinds.TryGetValue(rest[0], out var kind))
        {
            foreach (var name in rest.Skip(1))
            {
                Add(kind, name);
            }
        }
        else if (rest.Count > 0 && verb is "exec" or "logs" or "debug" or "attach" or "port-forward")
        {
            Add("pod", rest[0]);
        }

        return c with { Namespace = ns };
    }

    /// <summary>Shell words: quotes grouped and removed, nothing expanded.</summary>
    private static List<string> Tokens(string text)
    {
        var tokens = new List<string>();
        var current = new StringBuilder();
        var any = false;
        char quote = '\0';
        foreach (var ch in text)
        {
            if (quote != '\0')
            {
                if (ch == quote)
                {
                    quote = '\0';
                }
                else
                {
                    current.Append(ch);
                }
            }
            else if (ch is '\'' or '"')
            {
                quote = ch;
                any = true;
                if (ch == '"')
                {
                    current.Append('"'); // a double-quoted word may hold an expansion: keep a mark of it
                }
            }
            else if (char.IsWhiteSpace(ch))
            {
                if (any || current.Length > 0)
                {
                    tokens.Add(current.ToString());
                }

                current.Clear();
                any = false;
            }
            else
            {
                current.Append(ch);
            }
        }

        if (any || current.Length > 0)
        {
            tokens.Add(current.ToString());
        }

        return tokens;
    }

    [GeneratedRegex(@"`(kubectl [^`]+)`")]
    private static partial Regex InlineKubectl();

    [GeneratedRegex(@"for \w+ in \{(\d+)\.\.(\d+)\}")]
    private static partial Regex LoopRange();

    [GeneratedRegex(@"\{\.data\.([A-Za-z0-9_.-]+)\}")]
    private static partial Regex JsonPathDataKey();

    [GeneratedRegex(@"""containers""\s*:\s*\[.*\]")]
    private static partial Regex PatchContainers();

    [GeneratedRegex(@"\{""name""\s*:\s*""([a-z0-9-]+)""")]
    private static partial Regex PatchName();
}
