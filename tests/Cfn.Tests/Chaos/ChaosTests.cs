using Cfn.Chaos;
using Xunit.Abstractions;

namespace Cfn.Tests.Chaos;

/// <summary>Runs alone: the chaos run starts ten cfn processes and loads both cores for about two minutes.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ChaosCollection
{
    public const string Name = "chaos";
}

/// <summary>
/// The chaos test of issue 11 (item 7) in the test command: the same runner and checker as <c>bash bench/chaos.sh</c>
/// (bench/Cfn.Chaos), for 60 s. Real <c>cfn serve</c> processes (the cfn.dll built beside this test) on a private
/// redis-server with AOF; SIGKILL and SIGSTOP of coordinators and validators, a timeout handler killed mid-escalation,
/// a Redis restart. Fails on any violation of the invariants, with the checker's report (figures, violations
/// and the log lines that show them) as the message; the logs of every process run stay in the printed directory.
/// </summary>
[Collection(ChaosCollection.Name)]
public sealed class ChaosTests(ITestOutputHelper output)
{
    [Fact]
    public async Task ChaosRun_SixtySecondsOfFaults_EveryInvariantHolds()
    {
        var work = Directory.CreateTempSubdirectory("cfn-chaos-");
        var options = new ChaosOptions
        {
            CfnDll = Path.Combine(AppContext.BaseDirectory, "cfn.dll"),
            WorkDirectory = work.FullName,
            Duration = TimeSpan.FromSeconds(60),
            FaultInterval = TimeSpan.FromSeconds(4), // the long run's rate: the 60 s run gets about 15 faults
            DrainTimeout = TimeSpan.FromSeconds(40),
            Log = line => output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {line}"),
        };

        var report = await ChaosRunner.RunAsync(options);
        await File.WriteAllTextAsync(Path.Combine(work.FullName, "chaos-report.json"), report.ToJson());
        var table = report.ToTable();
        output.WriteLine(table);
        Assert.True(report.Passed, table);
        work.Delete(recursive: true); // kept for reading when the test fails
    }
}
